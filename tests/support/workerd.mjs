// The built worker under `workerd serve` run directly, with no Miniflare in the path: a config
// written here (the worker's modules, its bindings, a MODELS KV namespace), and the KV served by a
// small worker of ours over a read-only `disk` service holding a directory written by
// `central-sync publish --to dir:`. Miniflare's config puts its own entry worker in front of the
// user worker and implements KV and the Cache API as more workers; this one has only the user
// worker and the KV reader, so what is measured is workerd and the worker.
//
// The Cache API is not configured, as on a plain `workerd serve`: `caches.default` rejects, and
// the worker treats that as a miss (session-less lists are then ranked on every request). KV
// answers gets only; a put, delete or list answers 501, so a code path that needs them fails
// loudly instead of seeming to work.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import workerd from 'workerd';
import { BENCH_BINDINGS } from './edge.mjs';

const root = new URL('../../', import.meta.url).pathname;

/** `count` distinct TCP ports that were free a moment ago on 127.0.0.1 (held open together, so
 * none is handed out twice). */
async function freePorts(count) {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

// workerd's KV client asks its namespace service for `GET /<percent-encoded key>?urlencoded=true`
// (as in workerd's own KV tests); the key's path under the published directory is the key.
// `LATENCY_MS` holds every answer back that long (a stand-in for the round trip to a real KV,
// which is not on this machine). The reader keeps the order in which reads started and ended,
// which its own socket answers as JSON to `GET /?reads` (not a KV key: keys are never empty).
const KV_READER = `const reads = [];
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.method === 'GET' && url.pathname === '/' && url.search === '?reads') {
      return Response.json(reads);
    }
    if (request.method !== 'GET' || url.pathname === '/') {
      return new Response('this local KV answers gets only', { status: 501 });
    }
    const key = decodeURIComponent(url.pathname.slice(1));
    reads.push({ key, event: 'start' });
    const latency = Number(env.LATENCY_MS);
    if (latency > 0) await new Promise((ok) => setTimeout(ok, latency));
    let found = false;
    if (!key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      const file = await env.DIR.fetch('http://dir/' + key.split('/').map(encodeURIComponent).join('/'));
      if (file.ok) {
        found = true;
        reads.push({ key, event: 'end', found });
        return new Response(file.body);
      }
    }
    reads.push({ key, event: 'end', found });
    return new Response(null, { status: 404 });
  },
};
`;

/** A capnp string literal. */
const text = (s) => JSON.stringify(String(s));

/**
 * Starts `workerd serve` with the built worker (`scriptPath`, default edge-worker/build/index.js,
 * and the wasm modules beside it) and `kvDir` as its MODELS namespace, every KV read answered
 * after `kvLatencyMs`. Resolves when workerd accepts connections; returns the base URL (no
 * trailing slash), how long workerd took to be accepting connections, `kvReads()` (the KV reads
 * so far: `{ key, event: 'start' | 'end', found }` in the order they happened) and `stop()`.
 */
export async function directWorkerd(kvDir, { scriptPath = join(root, 'edge-worker/build/index.js'), bindings = {}, kvLatencyMs = 0 } = {}) {
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'edgerec-workerd-direct-'));
  const buildDir = dirname(scriptPath);
  const wasm = readdirSync(buildDir).filter((f) => f.endsWith('.wasm'));
  copyFileSync(scriptPath, join(dir, 'index.js'));
  for (const f of wasm) copyFileSync(join(buildDir, f), join(dir, f));
  writeFileSync(join(dir, 'kv-reader.js'), KV_READER);
  const vars = { ...BENCH_BINDINGS, ...bindings };
  const [port, kvPort] = await freePorts(2);
  writeFileSync(join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "edgerec", worker = .edgerec),
    (name = "kv", worker = .kvReader),
    (name = "published", disk = (path = ${text(kvDir)}, writable = false)),
  ],
  sockets = [
    (name = "http", address = ${text(`127.0.0.1:${port}`)}, http = (), service = "edgerec"),
    (name = "kv-log", address = ${text(`127.0.0.1:${kvPort}`)}, http = (), service = "kv"),
  ],
);
const edgerec :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
${wasm.map((f) => `    (name = ${text(f)}, wasm = embed ${text(f)}),`).join('\n')}
  ],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "MODELS", kvNamespace = "kv"),
${Object.entries(vars).map(([k, v]) => `    (name = ${text(k)}, text = ${text(v)}),`).join('\n')}
  ],
);
const kvReader :Workerd.Worker = (
  modules = [(name = "kv-reader.js", esModule = embed "kv-reader.js")],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "DIR", service = "published"),
    (name = "LATENCY_MS", text = ${text(kvLatencyMs)}),
  ],
);
`);
  let log = '';
  const child = spawn(workerd.default, ['serve', join(dir, 'config.capnp')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`workerd exited (${child.exitCode}): ${log}`);
      if (performance.now() - started > 30_000) throw new Error(`workerd was not ready after 30 s: ${log}`);
      // A TCP connection, not a request: the first request is left to the caller (a cold start
      // measures it).
      const ok = await new Promise((resolve) => {
        const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true); });
        socket.on('error', () => resolve(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 5));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const kvReads = async () => (await fetch(`http://127.0.0.1:${kvPort}/?reads`)).json();
  return { base, readyMs: performance.now() - started, kvReads, stop };
}

/** A worker that answers a fixed JSON body: the runtime's floor in the latency tools. */
export const FLOOR_WORKER = 'export default { fetch() { return Response.json({ ok: true }); } };\n';

/** The ranked query the latency tools send (geohash and device given, so no `cf` is needed). */
export const RANKED_QUERY = '/v1/recommendations?k=10&device=mobile&geohash=9q8yy';

/**
 * Milliseconds from now to the first answer to `path` ranked by the model (a fresh isolate
 * answers from the fallback list while it loads the model), and the requests it took.
 */
export async function firstRanked(base, path = RANKED_QUERY) {
  const t0 = performance.now();
  let requests = 0;
  while (performance.now() - t0 < 30_000) {
    const r = await (await fetch(base + path)).json();
    requests += 1;
    if (r.model && !r.fallback) return { first: performance.now() - t0, requests };
    await new Promise((ok) => setTimeout(ok, 2));
  }
  throw new Error('the model never loaded');
}

/** A session token for three clicks, from the worker's own `/v1/events`, so requests rank in full. */
export async function sessionToken(base) {
  const post = await fetch(`${base}/v1/events`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify([{ item: 'sku-1' }, { item: 'sku-2' }, { item: 'sku-3' }]),
  });
  const token = (await post.json()).session;
  if (!token) throw new Error(`no session token: ${post.status}`);
  return token;
}
