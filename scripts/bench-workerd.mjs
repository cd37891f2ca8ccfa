// Issue 14, item 4: the worker's latency on the runtime itself. `workerd serve` runs directly
// with a config of our own (tests/support/workerd.mjs: the built worker, and its MODELS KV read
// from a published directory), with no Miniflare and no `wrangler dev` proxy in the path; wrk
// talks to workerd's socket on 127.0.0.1. Same load as scripts/bench-worker.sh (50 connections,
// 2 threads, 15 s, a session token so every request ranks in full), with a 100,000 x 64 int8
// model; plus the cold start: from workerd accepting connections with the model in KV to the
// first answer ranked by that model (the median of several fresh workerd processes). The same
// loads again with oha, which reports the time each request took where wrk reports latencies
// corrected for coordinated omission (see `ohaRun`). Loopback only; wrk and oha stop by
// themselves. Twice: the bundle as built (workerd runs its relaxed-SIMD build) and a copy that
// always instantiates the simd128 build, with the ratios. For comparison, the same
// bundle under Miniflare's config (its entry worker in front, KV and the Cache API as more
// workers), as the tests run it, and the runtime's floor: a worker that answers a fixed JSON
// body, under the same workerd and wrk loads. Each server is also run below saturation: 50
// connections at a fixed rate of half the throughput oha's closed loop reached, every request
// timed from when it was due; the floor and Node's http server take the relaxed worker's rate, so
// what oha and the machine add to a tail is measured beside what workerd adds.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { servedWorker } from '../tests/support/edge.mjs';
import { directWorkerd, firstRanked, FLOOR_WORKER, RANKED_QUERY, sessionToken } from '../tests/support/workerd.mjs';
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

// wrk's percentiles are not the times its requests took. When a request takes longer than twice
// the mean interval between requests on a connection, wrk adds a synthetic sample for every
// request that connection would have sent in the meantime had it kept to that pace (its
// coordinated-omission correction, `stats_correct`), so one 100 ms stall at 20,000 req/s adds
// thousands of samples between 0 and 100 ms. That is the latency an open-loop client at that
// rate would see; at saturation, which a closed-loop run of 50 connections is, it makes the p99
// a measure of the rarest stalls. oha records each request's own time, uncorrected, so both are
// printed. Requests still in flight when oha's time runs out are reported as "aborted due to
// deadline"; they are not failures and are left out of its errors.
//
// With `rate`, oha sends at that fixed rate over the connections (an open loop, `-q`) and, with
// `--latency-correction`, times each request from when it was due to be sent, so a stall also
// counts for the requests queued behind it: the latency visitors arriving at that rate see.
function ohaRun(url, conns, secs, session = null, rate = null) {
  const out = execFileSync('oha', ['-c', String(conns), '-z', `${secs}s`, '--no-tui', '--output-format', 'json',
    ...(rate ? ['-q', String(rate), '--latency-correction'] : []),
    ...(session ? ['-H', `X-Edgerec-Session: ${session}`] : []), url], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const r = JSON.parse(out);
  const ms = (s) => (s * 1e3).toFixed(3);
  const errors = Object.entries(r.errorDistribution).filter(([kind]) => kind !== 'aborted due to deadline');
  const statuses = Object.entries(r.statusCodeDistribution).filter(([code]) => code !== '200');
  return {
    rps: r.summary.requestsPerSec.toFixed(2),
    p50: ms(r.latencyPercentiles.p50),
    p99: ms(r.latencyPercentiles.p99),
    p999: ms(r.latencyPercentiles['p99.9']),
    max: ms(r.summary.slowest),
    errors: [...errors.map(([k, n]) => `${k}: ${n}`), ...statuses.map(([c, n]) => `status ${c}: ${n}`)].join('; ') || 'none',
  };
}

/**
 * The measured loads: 50 connections for 15 s and one for 5 s, each waiting for its answer
 * before sending again (a closed loop, which saturates the server), under wrk and under oha;
 * then 50 connections at a fixed rate of half the throughput oha's closed loop reached (an open
 * loop), which is how a server below saturation, as a deployment is sized to run, serves; or at
 * `fixedRate`, to compare servers at one rate.
 */
function loads(url, session = null, fixedRate = null) {
  const wrk = { load: wrkRun(url, 2, 50, 15, session), one: wrkRun(url, 1, 1, 5, session) };
  const oha = { load: ohaRun(url, 50, 15, session), one: ohaRun(url, 1, 5, session) };
  const rate = fixedRate ?? Math.max(1, Math.round(Number(oha.load.rps) / 2));
  return { ...wrk, oha: { ...oha, fixed: { rate, ...ohaRun(url, 50, 15, session, rate) } } };
}

const QUERY = RANKED_QUERY;

// Cold starts: per run, one fresh `workerd serve` per bundle (interleaved, so that neither build
// always comes first: the first workerd a process starts is often slower), each timed from
// accepting connections to the first answer the model ranked.
const COLD_RUNS = 7;
async function coldStarts(scripts) {
  const times = scripts.map(() => []);
  for (let run = 0; run < COLD_RUNS; run++) {
    for (const [i, scriptPath] of scripts.entries()) {
      const { base, stop } = await directWorkerd(kvDir, { scriptPath });
      try {
        times[i].push((await firstRanked(base)).first);
      } finally {
        await stop();
      }
    }
  }
  return times;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The first answer, then the wrk and oha loads, on a server `serve()` starts; stopped afterwards. */
async function run(serve) {
  const { base, stop } = await serve();
  try {
    // Wait for the model: a fresh isolate answers the first requests from the fallback list
    // while it loads the model; this one ends with the first answer the model ranked.
    const { first, requests } = await firstRanked(base);
    const token = await sessionToken(base);
    const build = (await (await fetch(`${base}/v1/health`)).json()).wasm_build;
    const wrk = (threads, conns, secs, path = QUERY, session = token) => wrkRun(base + path, threads, conns, secs, session);
    const { load, one, oha } = loads(base + QUERY, token);
    // Where the time goes: the same load on /v1/health (the runtime, routing and a JSON answer,
    // no token and no ranking) and on a session-less list (kept in the isolate's memory, and in
    // the Cache API where there is one), beside the full ranking above.
    const health = wrk(2, 50, 5, '/v1/health', null);
    const anonymous = wrk(2, 50, 5, QUERY, null);
    return { build, load, one, health, anonymous, oha, first, requests };
  } finally {
    await stop();
  }
}

// The runtime's floor: a worker that answers a fixed JSON body, served by workerd run directly
// in the same way, under the same wrk loads: the latency workerd and wrk produce on this machine
// with no worker code to speak of. Its fixed-rate run uses the worker's rate, `rate`.
async function floor(rate) {
  const dir = mkdtempSync(join(tmpdir(), 'edgerec-floor-'));
  const script = join(dir, 'index.js');
  writeFileSync(script, FLOOR_WORKER);
  const { base, stop } = await directWorkerd(kvDir, { scriptPath: script });
  try {
    return loads(base, null, rate);
  } finally {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// The load generator's own floor: Node's http server answering the same fixed body, in a child
// process (this one blocks while oha runs), at the worker's fixed rate. Its tail is what oha and
// this machine add; what the workerd floor shows beyond it is workerd's, and what the worker
// shows beyond that, the worker's.
async function nodeFloor(rate) {
  const server = `const s = require('node:http').createServer((q, r) => {
    r.setHeader('content-type', 'application/json'); r.end('{"ok":true}'); });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const child = spawn(process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise((ok, fail) => {
      child.stdout.once('data', (d) => ok(Number(String(d).trim())));
      child.once('exit', (code) => fail(new Error(`the Node http server exited (${code})`)));
    });
    return { rate, ...ohaRun(`http://127.0.0.1:${port}/`, 50, 15, null, rate) };
  } finally {
    child.kill();
  }
}

// The simd128-only variant: the same bundle with the build choice replaced by the simd128 module.
const buildDir = new URL('../edge-worker/build/', import.meta.url).pathname;
const bundle = readFileSync(join(buildDir, 'index.js'), 'utf8');
const pick = /var ([\w$]+)=edgerecPickWasm\(\);/;
if (!pick.test(bundle)) throw new Error('edge-worker/build/index.js does not choose its wasm build (rebuild it)');
const simdOnly = join(buildDir, 'index.simd128-only.js');
writeFileSync(simdOnly, bundle.replace(pick, 'var $1=edgerecWasmSimd128;'));
let relaxed, simd, miniflare, base, cold;
try {
  cold = await coldStarts([join(buildDir, 'index.js'), simdOnly]);
  relaxed = await run(() => directWorkerd(kvDir, { scriptPath: join(buildDir, 'index.js') }));
  simd = await run(() => directWorkerd(kvDir, { scriptPath: simdOnly }));
  miniflare = await run(() => servedWorker(kvDir, { scriptPath: join(buildDir, 'index.js') }));
  base = await floor(relaxed.oha.fixed.rate);
  base.node = await nodeFloor(relaxed.oha.fixed.rate);
} finally {
  rmSync(simdOnly, { force: true });
}
relaxed.cold = cold[0];
simd.cold = cold[1];
const ohaLine = ({ load, one }) => `as each request took (oha, no correction): 50 connections ${load.rps} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, p99.9 ${load.p999} ms, max ${load.max} ms, errors: ${load.errors}; one connection ${one.rps} req/s, p50 ${one.p50} ms, p99 ${one.p99} ms`;
// Little's law: with every one of the 50 connections always waiting on an answer, the mean
// latency is 50 / throughput whatever the code does, and a p99 cannot be below the mean.
const fixedLine = ({ fixed }, what = 'half that throughput') => `at a fixed rate, ${what} (oha -q ${fixed.rate} --latency-correction, 50 connections, each request timed from when it was due): ${fixed.rps} req/s, p50 ${fixed.p50} ms, p99 ${fixed.p99} ms, p99.9 ${fixed.p999} ms, max ${fixed.max} ms, errors: ${fixed.errors}`;
const little = (rps) => `Little's law: 50 connections always waiting at ${Number(rps).toFixed(0)} req/s average ${(50e3 / rps).toFixed(1)} ms per request; a p99 <= 10 ms at 50 connections needs more than 5,000 req/s from this one isolate`;
const report = (r, how) => {
  const { build, load, one, health, anonymous, oha, first, requests } = r;
  console.log(`[bench-workerd] ${N.toLocaleString('en')} x ${DIM} int8 model, ${build} build, ${how} on 127.0.0.1, wrk 2 threads x 50 connections x 15 s, session token (full ranking per request)`);
  console.log(`[bench-workerd]   requests/s ${load.rps}, p50 ${load.p50}, p99 ${load.p99} (target p99 <= 10 ms); errors: ${load.errors}`);
  console.log(`[bench-workerd]   one connection: requests/s ${one.rps}, p50 ${one.p50}, p99 ${one.p99}`);
  console.log(`[bench-workerd]   ${ohaLine(oha)}`);
  console.log(`[bench-workerd]   ${little(oha.load.rps)}`);
  console.log(`[bench-workerd]   ${fixedLine(oha)}`);
  console.log(`[bench-workerd]   where the time goes (50 connections): /v1/health ${health.rps} req/s (p50 ${health.p50}); session-less list ${anonymous.rps} req/s (p50 ${anonymous.p50}); ranked list ${load.rps} req/s`);
  if (r.cold) {
    console.log(`[bench-workerd]   cold start with the model in KV: first model-ranked answer after workerd accepted connections, median of ${r.cold.length} fresh workerd processes ${median(r.cold).toFixed(1)} ms [${r.cold.map((x) => x.toFixed(1)).join(', ')}] (target <= 50 ms)`);
  } else {
    console.log(`[bench-workerd]   cold start with the model in KV: first model-ranked answer ${first.toFixed(1)} ms after workerd was ready (one run; ${requests} requests, the earlier ones answered from the fallback list; target <= 50 ms)`);
  }
};
for (const r of [relaxed, simd]) report(r, 'workerd serve run directly (own config, no Miniflare)');
console.log(`[bench-workerd] ${relaxed.build} vs ${simd.build}: ranked requests/s ${(relaxed.load.rps / simd.load.rps).toFixed(2)}x (50 connections), ${(relaxed.one.rps / simd.one.rps).toFixed(2)}x (one connection); cold start ${median(relaxed.cold).toFixed(1)} vs ${median(simd.cold).toFixed(1)} ms (medians)`);
report(miniflare, "workerd serve under Miniflare's config (for comparison)");
console.log(`[bench-workerd] run directly vs under Miniflare (${relaxed.build} build): ranked requests/s ${(relaxed.load.rps / miniflare.load.rps).toFixed(2)}x`);
console.log(`[bench-workerd] runtime floor, a worker that answers a fixed JSON body (workerd run directly, same wrk loads): 50 connections ${base.load.rps} req/s, p50 ${base.load.p50}, p99 ${base.load.p99}, errors: ${base.load.errors}; one connection p50 ${base.one.p50}, p99 ${base.one.p99}`);
console.log(`[bench-workerd] runtime floor ${ohaLine(base.oha)}`);
console.log(`[bench-workerd] runtime floor ${fixedLine(base.oha, `the ${relaxed.build} worker's`)}`);
const n = base.node;
console.log(`[bench-workerd] load generator's floor, Node's http server answering the same body (no workerd), oha -q ${n.rate} --latency-correction, 50 connections: ${n.rps} req/s, p50 ${n.p50} ms, p99 ${n.p99} ms, p99.9 ${n.p999} ms, max ${n.max} ms, errors: ${n.errors}`);
