// H3's figure: the real peak memory of a worker isolate that loads a model. For models of
// 10k, 100k and 400k items x 64 dims (int8), the built worker in workerd (Miniflare, local KV)
// loads the model and `/v1/health` reports its wasm linear memory, which never shrinks: the
// peak of the wasm heap. Printed beside the shard bytes and the 48 MiB budget central-sync
// enforces (`EDGE_MODEL_BUDGET_BYTES`).
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../tests/support/edge.mjs';
import { publishRandomModel } from '../tests/support/npy.mjs';
import { directWorkerd } from '../tests/support/workerd.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'edgerec-memory-'));
const DIM = 64;

console.log('[bench-memory] items x 64 int8 | shard bytes | worker wasm memory after the load | ratio');
for (const n of [10_000, 100_000, 400_000]) {
  const dir = join(tmp, `m${n}`);
  mkdirSync(dir);
  const kvDir = publishRandomModel(dir, n, DIM, n);
  const mf = workerMiniflare({ SESSION_KEY: 'bench-memory-session-key-0123456789', CHECK_INTERVAL_SECONDS: '60' });
  try {
    await copyDirToKv(kvDir, await mf.getKVNamespace('MODELS'));
    const health = await (await mf.dispatchFetch('http://localhost/v1/health')).json();
    if (!health.model) throw new Error(`no model loaded: ${JSON.stringify(health.last_error)}`);
    const manifest = await (await mf.dispatchFetch('http://localhost/v1/model')).json();
    const shardBytes = manifest.shards.reduce((a, s) => a + s.bytes, 0);
    const mb = (b) => `${(b / 1048576).toFixed(1)} MiB`;
    console.log(`[bench-memory] ${n} | ${mb(shardBytes)} | ${mb(health.wasm_memory_bytes)} | ${(health.wasm_memory_bytes / shardBytes).toFixed(2)}x (budget 48 MiB of shards; isolate limit 128 MB)`);
  } finally {
    await mf.dispose();
  }
}

// The paged 1M model (format 7): the isolate holds the index and a page cache, and reads pages
// from KV as requests need them, so its memory is measured after ranked requests, not after the
// load. Clustered embeddings (1,024 centres), as real catalogs have: on uniform random vectors
// a request's candidates would come from every cluster. The worker runs on workerd directly,
// reading KV from the published directory (no copy of 170 MB into Miniflare's store).
{
  const n = 1_000_000;
  const dir = join(tmp, 'm1m-paged');
  mkdirSync(dir);
  const kvDir = publishRandomModel(dir, n, DIM, 7, { pageItems: 1024, clusters: 1024 });
  const w = await directWorkerd(kvDir);
  try {
    let health;
    for (let i = 0; i < 600 && !health?.model; i++) {
      health = await (await fetch(`${w.base}/v1/health`)).json();
      if (!health.model) await new Promise((ok) => setTimeout(ok, 100));
    }
    if (!health.model) throw new Error(`no model loaded: ${JSON.stringify(health.last_error)}`);
    const manifest = await (await fetch(`${w.base}/v1/model`)).json();
    const indexBytes = manifest.shards.reduce((a, s) => a + s.bytes, 0);
    const afterLoad = health.wasm_memory_bytes;
    let s = 99;
    const pick = () => `sku-${(s = (s * 1103515245 + 12345) % 2147483648) % n}`;
    const REQUESTS = 200;
    const times = [];
    for (let q = 0; q < REQUESTS; q++) {
      const clicks = Array.from({ length: 5 }, () => ({ item: pick() }));
      const post = await fetch(`${w.base}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(clicks) });
      const token = (await post.json()).session;
      const t = performance.now();
      const r = await fetch(`${w.base}/v1/recommendations?k=10&device=mobile`, { headers: { 'X-Edgerec-Session': token } });
      const body = await r.json();
      times.push(performance.now() - t);
      if (r.status !== 200 || body.items?.length !== 10) throw new Error(`request ${q}: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
    }
    health = await (await fetch(`${w.base}/v1/health`)).json();
    const mb = (b) => `${(b / 1048576).toFixed(1)} MiB`;
    const sorted = [...times].sort((a, b) => a - b);
    console.log(`[bench-memory] 1M paged (${manifest.pages.length} pages, page cache 16 MiB) | index ${mb(indexBytes)} | ${mb(health.wasm_memory_bytes)} after ${REQUESTS} ranked sessions (${mb(afterLoad)} after the load); request median ${sorted[REQUESTS >> 1].toFixed(1)} ms, p90 ${sorted[Math.floor(REQUESTS * 0.9)].toFixed(1)} ms, pages read from the published directory | target: loaded model <= 40 MB`);
  } finally {
    await w.stop();
  }
}
