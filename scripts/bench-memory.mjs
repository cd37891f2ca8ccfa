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
