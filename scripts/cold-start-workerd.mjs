// Cold start of the built worker on workerd, repeated: for each run and each bundle, a fresh
// workerd (Miniflare's config) with the 100,000 x 64 int8 model in local KV, then one ranked
// request; prints the median time to that answer and to workerd being ready. Several bundles
// are run interleaved, to compare builds on this noisy machine (a bundle must lie inside the
// repository, e.g. a copy of edge-worker/build/ at edge-worker/build-before/).
// With --direct, workerd runs with the config of tests/support/workerd.mjs (no Miniflare), and
// --kv-latency MS (direct only) holds every KV read back that long, a stand-in for the round trip
// to Cloudflare's KV, which a local KV does not have.
// Usage: node scripts/cold-start-workerd.mjs [--direct [--kv-latency MS]] [RUNS] [BUNDLE.js ...].
// Not part of `make test`;
// `make bench` reports the median of 7 interleaved cold starts per build on workerd run directly
// (scripts/bench-workerd.mjs).
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { servedWorker } from '../tests/support/edge.mjs';
import { directWorkerd } from '../tests/support/workerd.mjs';
import { publishRandomModel } from '../tests/support/npy.mjs';
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-cold-'));
const kvDir = publishRandomModel(tmp, 100_000, 64, 11);
const args = process.argv.slice(2);
const direct = args[0] === '--direct';
if (direct) args.shift();
let kvLatencyMs = 0;
if (args[0] === '--kv-latency') {
  if (!direct) throw new Error('--kv-latency needs --direct');
  kvLatencyMs = Number(args[1]);
  if (!(kvLatencyMs >= 0)) throw new Error(`--kv-latency: not a number of milliseconds: ${args[1]}`);
  args.splice(0, 2);
}
const runs = Number(args[0] ?? 5);
const scripts = args.length > 1 ? args.slice(1) : ['edge-worker/build/index.js'];
// Either way: the base URL, how long workerd took to be ready, and how to stop it.
const serve = (scriptPath) => (direct ? directWorkerd(kvDir, { scriptPath, kvLatencyMs }) : servedWorker(kvDir, { scriptPath }));
const res = Object.fromEntries(scripts.map((s) => [s, { cold: [], ready: [] }]));
for (let i = 0; i < runs; i++) for (const script of scripts) {
  const { base, readyMs, stop } = await serve(script);
  try {
    res[script].ready.push(readyMs);
    const t0 = performance.now();
    const r = await (await fetch(base + '/v1/recommendations?k=10&device=mobile&geohash=9q8yy')).json();
    if (!r.model || r.fallback) throw new Error(`the first request was not ranked by the model: ${JSON.stringify(r).slice(0, 200)}`);
    res[script].cold.push(performance.now() - t0);
  } finally { await stop(); }
}
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)].toFixed(1); };
for (const s of scripts) console.log(`[cold-start-workerd] ${s}${kvLatencyMs ? ` (KV reads held ${kvLatencyMs} ms)` : ''}: first ranked answer, median of ${runs}: ${med(res[s].cold)} ms ${JSON.stringify(res[s].cold.map((x) => +x.toFixed(1)))}; workerd ready after ${med(res[s].ready)} ms`);
