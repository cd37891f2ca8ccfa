// A CPU profile of the built worker under load, on workerd itself: Miniflare runs `workerd serve`
// with its inspector on, the Chrome DevTools protocol's `Profiler` samples the user worker while
// wrk sends ranked requests (100,000 x 64 int8 model, session token), and the functions with the
// most self time are printed (the worker's wasm keeps its names, so these are Rust functions).
// Usage: node scripts/profile-workerd.mjs [PATH] [OUT.cpuprofile]; the profile also opens in
// Chrome DevTools. With `--cold` it profiles the cold start instead: the isolate's first request
// with the model in KV (KV reads, shard copies and validation, the first ranking). With `--heap`
// it samples allocations under the same load instead (V8's sampling heap profiler, keeping
// objects the collector has already freed), and prints the bytes each function allocated per
// request: the garbage whose collection pauses the isolate (scripts/stalls-workerd.mjs).
// Not part of `make test` or `make bench`: a tool for finding what to remove.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import WebSocket from 'ws';
import { servedWorker } from '../tests/support/edge.mjs';
import { publishRandomModel } from '../tests/support/npy.mjs';
import { firstRanked, sessionToken } from '../tests/support/workerd.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'edgerec-profile-'));
const [N, DIM, INSPECTOR] = [100_000, 64, 9239];
const cold = process.argv.includes('--cold');
// --cold wins over --heap: the cold start is profiled for CPU time only.
const heap = process.argv.includes('--heap') && !cold;
const args = process.argv.slice(2).filter((a) => a !== '--cold' && a !== '--heap');
const path = args[0] ?? '/v1/recommendations?k=10&device=mobile&geohash=9q8yy';
const out = args[1] ?? join(tmp, 'worker.cpuprofile');

const kvDir = publishRandomModel(tmp, N, DIM, 11);

const { mf, base } = await servedWorker(kvDir, { options: { inspectorPort: INSPECTOR } });
try {
  // The inspector of the user worker (Miniflare's own workers, entry, KV and cache, are separate
  // targets; the user worker is `core:user:`), with the sampling profiler enabled.
  const profiler = async () => {
    const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR}/json/list`)).json();
    const target = targets.find((t) => t.title.endsWith('core:user:'));
    if (!target) throw new Error(`no user worker among ${targets.map((t) => t.title).join(', ')}`);
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((ok, fail) => { ws.on('open', ok); ws.on('error', fail); });
    let id = 0;
    const pending = new Map();
    ws.on('message', (m) => { const d = JSON.parse(m); pending.get(d.id)?.(d); pending.delete(d.id); });
    const send = (method, params = {}) => new Promise((ok) => { id += 1; pending.set(id, ok); ws.send(JSON.stringify({ id, method, params })); });
    await send('Profiler.enable');
    await send('Profiler.setSamplingInterval', { interval: 100 });
    return { send, ws };
  };
  let summary;
  let send;
  let ws;
  let heapRequests = 0;
  if (cold) {
    ({ send, ws } = await profiler());
    await send('Profiler.start');
    const t0 = performance.now();
    const r = await (await fetch(base + path)).json();
    const ms = performance.now() - t0;
    if (!r.model || r.fallback) throw new Error(`the first request was not ranked by the model: ${JSON.stringify(r).slice(0, 200)}`);
    summary = `cold start (first request, model in KV): ${ms.toFixed(1)} ms with the profiler attached`;
  } else {
    await firstRanked(base, '/v1/recommendations?k=1');
    const token = await sessionToken(base);
    ({ send, ws } = await profiler());
    if (heap) {
      await send('HeapProfiler.enable');
      await send('HeapProfiler.startSampling', {
        samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
      });
    } else {
      await send('Profiler.start');
    }
    const wrk = execFileSync('wrk', ['-t1', '-c4', '-d5s', '-H', `X-Edgerec-Session: ${token}`, base + path], { encoding: 'utf8' });
    summary = `${wrk.match(/Requests\/sec:\s+[\d.]+/)[0]} while profiling`;
    heapRequests = Number(wrk.match(/(\d+) requests in/)[1]);
  }
  // A profile node's function, named the same way in both reports.
  const frameName = (f) => `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}`.trim();
  if (heap) {
    const { result } = await send('HeapProfiler.stopSampling');
    ws.close();
    writeFileSync(out.replace(/\.cpuprofile$/, '.heapprofile'), JSON.stringify(result.profile));
    // Each node of the tree is a call stack; its selfSize, the bytes sampled as allocated there.
    const bytes = new Map();
    const walk = (node) => {
      const name = frameName(node.callFrame);
      bytes.set(name, (bytes.get(name) ?? 0) + node.selfSize);
      node.children.forEach(walk);
    };
    walk(result.profile.head);
    const total = [...bytes.values()].reduce((a, b) => a + b, 0);
    console.log(`[profile-workerd] ${path}: ${summary}; JS heap allocated by the user worker: ${(total / heapRequests).toFixed(0)} bytes per request over ${heapRequests} requests, by function:`);
    for (const [name, b] of [...bytes].sort((x, y) => y[1] - x[1]).slice(0, 25)) {
      console.log(`[profile-workerd] ${(100 * b / total).toFixed(1).padStart(5)}% ${(b / heapRequests).toFixed(0).padStart(7)} B/request ${name}`);
    }
  } else {
    const { result } = await send('Profiler.stop');
    ws.close();
    writeFileSync(out, JSON.stringify(result.profile));
    const { nodes, samples, timeDeltas } = result.profile;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const self = new Map();
    // `timeDeltas[i]` is the time from sample i-1 to sample i. A sample stands for the stack from
    // its own time until the next sample, so it is credited with `timeDeltas[i + 1]`: crediting
    // `timeDeltas[i]` would charge a long idle gap (a KV read) to whatever ran just after it.
    samples.forEach((s, i) => {
      const name = frameName(byId.get(s).callFrame);
      self.set(name, (self.get(name) ?? 0) + (timeDeltas[i + 1] ?? 0));
    });
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    console.log(`[profile-workerd] ${path}: ${summary}; self time of the user worker (${(total / 1000).toFixed(1)} ms sampled):`);
    for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
      console.log(`[profile-workerd] ${(100 * t / total).toFixed(1).padStart(5)}% ${(t / 1000).toFixed(1).padStart(6)} ms ${name}`);
    }
    console.log(`[profile-workerd] profile written to ${out}`);
  }
} finally {
  await mf.dispose();
}
