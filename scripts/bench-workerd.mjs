// Issue 14, item 4: the worker's latency on the runtime itself. Miniflare writes the workerd
// config (the built worker, its MODELS KV namespace stored locally, Miniflare's small entry
// worker in front that adds `cf`) and runs `workerd serve`; wrk talks to workerd's own socket
// on 127.0.0.1, with no `wrangler dev` proxy in the path. Same load as scripts/bench-worker.sh
// (50 connections, 2 threads, 15 s, a session token so every request ranks in full), with a
// 100,000 x 64 int8 model; plus the cold start: from workerd being ready with the model in KV to
// the first answer ranked by that model. Loopback only; wrk stops by itself. Twice: the bundle as
// built (workerd runs its relaxed-SIMD build) and a copy that always instantiates the simd128
// build, with the ratios.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Miniflare } from 'miniflare';
import { servedWorker } from '../tests/support/edge.mjs';
import { publishRandomModel } from '../tests/support/npy.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'edgerec-workerd-'));
const N = 100_000;
const DIM = 64;

const kvDir = publishRandomModel(tmp, N, DIM, 11);

/** One wrk run against `url` (optionally with a session token), parsed. */
function wrkRun(url, threads, conns, secs, session = null) {
  const out = execFileSync('wrk', [`-t${threads}`, `-c${conns}`, `-d${secs}s`, '--latency',
    ...(session ? ['-H', `X-Edgerec-Session: ${session}`] : []), url], { encoding: 'utf8' });
  return {
    rps: out.match(/Requests\/sec:\s+([\d.]+)/)[1],
    p50: out.match(/^\s+50%\s+(\S+)/m)[1],
    p99: out.match(/^\s+99%\s+(\S+)/m)[1],
    errors: (out.match(/(Non-2xx.*|Socket errors.*)/g) ?? ['none']).join('; '),
  };
}

// The runtime's floor: a worker that answers a fixed JSON body, served by the same Miniflare
// config and workerd on the same socket setup, under the same wrk loads: the tail latency the
// runtime and wrk produce on this machine with no worker code to speak of. (Not a strict lower
// bound for the p99 of a slower worker: this one is driven at a higher request rate.)
async function floor() {
  const mf = new Miniflare({
    modules: true,
    script: 'export default { fetch() { return Response.json({ ok: true }); } };',
    compatibilityDate: '2026-04-01',
    host: '127.0.0.1',
    port: 0,
  });
  try {
    const url = (await mf.ready).toString();
    return { load: wrkRun(url, 2, 50, 15), one: wrkRun(url, 1, 1, 5) };
  } finally {
    await mf.dispose();
  }
}

async function run(scriptPath) {
  const { mf, base } = await servedWorker(kvDir, { scriptPath });
  try {
    const query = '/v1/recommendations?k=10&device=mobile&geohash=9q8yy';
    // Cold start: a fresh isolate answers the first requests from the fallback list while it
    // loads the model; the cold start ends with the first answer the model ranked.
    const t0 = performance.now();
    let first = null;
    let requests = 0;
    while (performance.now() - t0 < 30_000) {
      const r = await (await fetch(base + query)).json();
      requests += 1;
      if (r.model && !r.fallback) { first = performance.now() - t0; break; }
      await new Promise((ok) => setTimeout(ok, 2));
    }
    if (first === null) throw new Error('the model never loaded');
    const post = await fetch(`${base}/v1/events`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify([{ item: 'sku-1' }, { item: 'sku-2' }, { item: 'sku-3' }]),
    });
    const token = (await post.json()).session;
    if (!token) throw new Error(`no session token: ${post.status}`);
    const build = (await (await fetch(`${base}/v1/health`)).json()).wasm_build;
    const wrk = (threads, conns, secs, path = query, session = token) => wrkRun(base + path, threads, conns, secs, session);
    const load = wrk(2, 50, 15);
    const one = wrk(1, 1, 5);
    // Where the time goes: the same load on /v1/health (the runtime, Miniflare's entry worker,
    // routing and a JSON answer, no token and no ranking) and on a session-less list (the Cache
    // API hit path), beside the full ranking above.
    const health = wrk(2, 50, 5, '/v1/health', null);
    const anonymous = wrk(2, 50, 5, query, null);
    return { build, load, one, health, anonymous, first, requests };
  } finally {
    await mf.dispose();
}
}

// The simd128-only variant: the same bundle with the build choice replaced by the simd128 module.
const buildDir = new URL('../edge-worker/build/', import.meta.url).pathname;
const bundle = readFileSync(join(buildDir, 'index.js'), 'utf8');
const pick = /var ([\w$]+)=edgerecPickWasm\(\);/;
if (!pick.test(bundle)) throw new Error('edge-worker/build/index.js does not choose its wasm build (rebuild it)');
const simdOnly = join(buildDir, 'index.simd128-only.js');
writeFileSync(simdOnly, bundle.replace(pick, 'var $1=edgerecWasmSimd128;'));
let relaxed, simd, base;
try {
  relaxed = await run(join(buildDir, 'index.js'));
  simd = await run(simdOnly);
  base = await floor();
} finally {
  rmSync(simdOnly, { force: true });
}
for (const r of [relaxed, simd]) {
  const { build, load, one, health, anonymous, first, requests } = r;
  console.log(`[bench-workerd] ${N.toLocaleString('en')} x ${DIM} int8 model, ${build} build, workerd serve (Miniflare's config) on 127.0.0.1, wrk 2 threads x 50 connections x 15 s, session token (full ranking per request)`);
  console.log(`[bench-workerd]   requests/s ${load.rps}, p50 ${load.p50}, p99 ${load.p99} (target p99 <= 10 ms); errors: ${load.errors}`);
  console.log(`[bench-workerd]   one connection: requests/s ${one.rps}, p50 ${one.p50}, p99 ${one.p99}`);
  console.log(`[bench-workerd]   where the time goes (50 connections): /v1/health ${health.rps} req/s (p50 ${health.p50}); cached session-less list ${anonymous.rps} req/s (p50 ${anonymous.p50}); ranked list ${load.rps} req/s`);
  console.log(`[bench-workerd]   cold start with the model in KV: first model-ranked answer ${first.toFixed(1)} ms after workerd was ready (${requests} requests, the earlier ones answered from the fallback list; target <= 50 ms)`);
}
console.log(`[bench-workerd] ${relaxed.build} vs ${simd.build}: ranked requests/s ${(relaxed.load.rps / simd.load.rps).toFixed(2)}x (50 connections), ${(relaxed.one.rps / simd.one.rps).toFixed(2)}x (one connection); cold start ${relaxed.first.toFixed(1)} vs ${simd.first.toFixed(1)} ms`);
console.log(`[bench-workerd] runtime floor, a worker that answers a fixed JSON body (same workerd, same wrk loads): 50 connections ${base.load.rps} req/s, p50 ${base.load.p50}, p99 ${base.load.p99}, errors: ${base.load.errors}; one connection p50 ${base.one.p50}, p99 ${base.one.p99}`);
