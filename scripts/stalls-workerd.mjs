// Where a fixed-rate tail comes from: one fresh `workerd serve` (run directly, as in
// scripts/bench-workerd.mjs) takes 50 connections at a fixed rate for a while (oha -q with
// --latency-correction, so each request is timed from when it was due), and this prints the
// p50/p99, every cluster of slow requests (start, length, how many requests it held) and
// workerd's resident memory every 5 s (and the worker's wasm memory, from `/v1/health`). Periodic clusters that grow with memory are the
// isolate's garbage collections; a cluster at the start is the engine warming up.
// Usage: node scripts/stalls-workerd.mjs [--floor | --bundle BUNDLE.js] [--preload SECONDS]
// [RATE] [SECONDS] [SLOW_MS] (defaults 1000 req/s, 40 s, 10 ms). `--preload` first saturates the
// server for that long (50 connections, closed loop), as `make bench` does before its
// fixed-rate run. Without --floor: the built worker (or another build's
// bundle, its wasm beside it) with a 100,000 x 64 int8 model, ranked requests with a session
// token. With --floor: a worker that answers a fixed JSON body. Not part of `make test` or
// `make bench`: a tool for finding what to remove.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { directWorkerd, firstRanked, FLOOR_WORKER, RANKED_QUERY, sessionToken } from '../tests/support/workerd.mjs';
import { publishRandomModel } from '../tests/support/npy.mjs';

const args = process.argv.slice(2);
const floor = args[0] === '--floor';
if (floor) args.shift();
const bundle = args[0] === '--bundle' ? args.splice(0, 2)[1] : null;
const preload = args[0] === '--preload' ? Number(args.splice(0, 2)[1]) : 0;
const [rate, secs, slowMs] = [Number(args[0] ?? 1000), Number(args[1] ?? 40), Number(args[2] ?? 10)];
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-stalls-'));

let scriptPath = bundle;
if (floor) {
  scriptPath = join(tmp, 'index.js');
  writeFileSync(scriptPath, FLOOR_WORKER);
}
const kvDir = publishRandomModel(tmp, floor ? 1_000 : 100_000, 64, 11);
const server = await directWorkerd(kvDir, scriptPath ? { scriptPath } : {});
try {
  let url = server.base + '/';
  const headers = [];
  if (!floor) {
    url = server.base + RANKED_QUERY;
    // The first answer ranked by the model, then a session token for ranked requests.
    await firstRanked(server.base);
    headers.push('-H', `X-Edgerec-Session: ${await sessionToken(server.base)}`);
  }
  if (preload > 0) {
    execFileSync('oha', ['-c', '50', '-z', `${preload}s`, '--no-tui', '--output-format', 'quiet', ...headers, url]);
  }
  const pid = execFileSync('pgrep', ['-n', '-f', 'workerd serve'], { encoding: 'utf8' }).trim();
  const rssMiB = () => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024;
  // The worker's own wasm linear memory (`/v1/health`), beside the process's: flat while resident
  // memory grows means the growth is workerd's and V8's, not a leak in the worker's heap.
  const wasmMiB = async () => (await (await fetch(server.base + '/v1/health')).json()).wasm_memory_bytes / 2 ** 20;
  const rss = [rssMiB()];
  const wasm = floor ? [] : [await wasmMiB()];
  const timer = setInterval(() => {
    rss.push(rssMiB());
    if (!floor) wasmMiB().then((m) => wasm.push(m), () => wasm.push(NaN));
  }, 5000);
  // oha runs as a child process so this one keeps sampling memory meanwhile.
  const csv = await new Promise((ok, fail) => {
    const oha = spawn('oha', ['-c', '50', '-z', `${secs}s`, '--no-tui', '--output-format', 'csv', '-q', String(rate),
      '--latency-correction', ...headers, url]);
    let out = '';
    oha.stdout.on('data', (d) => { out += d; });
    oha.on('close', (code) => (code === 0 ? ok(out) : fail(new Error(`oha exited ${code}`))));
  });
  clearInterval(timer);
  // Columns: request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status.
  const rows = csv.trim().split('\n').slice(1).map((l) => l.split(','))
    .map((c) => ({ start: Number(c[0]), ms: Number(c[4]) * 1e3, ok: c[6] === '200' }))
    .sort((a, b) => a.start - b.start);
  const sorted = rows.map((r) => r.ms).sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))].toFixed(2);
  console.log(`[stalls-workerd] ${floor ? 'fixed-JSON worker' : 'edgerec worker, ranked requests'}, ${rate} req/s over 50 connections for ${secs} s: ${rows.length} requests, ${rows.filter((r) => !r.ok).length} not 200; p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, p99.9 ${pct(0.999)} ms`);
  // Slow requests that started within 200 ms of each other form one cluster.
  const clusters = [];
  for (const r of rows.filter((x) => x.ms > slowMs)) {
    const last = clusters.at(-1);
    if (last && r.start - last.end < 0.2) {
      last.end = r.start; last.max = Math.max(last.max, r.ms); last.n += 1;
    } else {
      clusters.push({ start: r.start, end: r.start, max: r.ms, n: 1 });
    }
  }
  const held = clusters.reduce((a, c) => a + c.n, 0);
  console.log(`[stalls-workerd] ${clusters.length} clusters of requests over ${slowMs} ms, holding ${held} requests (${(100 * held / rows.length).toFixed(2)}%):`);
  for (const c of clusters) {
    console.log(`[stalls-workerd]   at ${c.start.toFixed(2)} s: longest ${c.max.toFixed(1)} ms, ${c.n} requests`);
  }
  console.log(`[stalls-workerd] workerd resident memory every 5 s (MiB): ${rss.map((x) => x.toFixed(0)).join(' ')}`);
  if (!floor) console.log(`[stalls-workerd] the worker's wasm memory every 5 s (MiB): ${wasm.map((x) => x.toFixed(1)).join(' ')}`);
} finally {
  await server.stop();
  rmSync(tmp, { recursive: true, force: true });
}
