// Shared by the worker and browser tests: the built worker under Miniflare, and a directory KV
// (written by `central-sync publish --to dir:`) copied into Miniflare's KV.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Miniflare } from 'miniflare';

const root = new URL('../../', import.meta.url).pathname;

/** The real built worker (edge-worker/build) in workerd, with a MODELS KV namespace; `options`
 * are more Miniflare options (e.g. `host` and `port` to serve HTTP from workerd's own socket);
 * `scriptPath` another bundle in edge-worker/build (the benches' variants). */
export function workerMiniflare(bindings, options = {}, scriptPath = join(root, 'edge-worker/build/index.js')) {
  return new Miniflare({
    ...options,
    modules: true,
    scriptPath,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true }],
    compatibilityDate: '2026-04-01',
    kvNamespaces: ['MODELS'],
    bindings,
  });
}

/** The bindings the benches and the profiler give the worker (a fixed session key, no model
 * re-check during a run, no ingest); tests/support/workerd.mjs gives the same. */
export const BENCH_BINDINGS = {
  SESSION_KEY: 'bench-workerd-session-key-0123456789',
  CHECK_INTERVAL_SECONDS: '600',
  INGEST_URL: '',
};

/**
 * The built worker served over real HTTP on 127.0.0.1 (a free port) with the files under `kvDir`
 * in its KV, as the workerd benches and the profiler run it. Returns Miniflare, the base URL
 * (no trailing slash), how long workerd took to be ready (before the KV copy) and `stop()`
 * (as tests/support/workerd.mjs's `directWorkerd` does).
 */
export async function servedWorker(kvDir, { scriptPath, options = {}, bindings = {} } = {}) {
  const started = performance.now();
  const mf = workerMiniflare(
    { ...BENCH_BINDINGS, ...bindings },
    { host: '127.0.0.1', port: 0, ...options },
    scriptPath,
  );
  try {
    const base = (await mf.ready).toString().replace(/\/$/, '');
    const readyMs = performance.now() - started;
    await copyDirToKv(kvDir, await mf.getKVNamespace('MODELS'));
    return { mf, base, readyMs, stop: () => mf.dispose() };
  } catch (e) {
    await mf.dispose();
    throw e;
  }
}

/** Puts every file under `dir` into `kv`, keyed by its relative path (what `publish --to local` does). */
export async function copyDirToKv(dir, kv) {
  const walk = (d) => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
  // A copy, not the Buffer: Miniflare's proxy cannot serialise pooled Buffer views.
  for (const file of walk(dir)) await kv.put(relative(dir, file), new Uint8Array(readFileSync(file)));
}
