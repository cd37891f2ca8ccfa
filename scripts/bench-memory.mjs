// H3's figure: the real peak memory of a worker isolate that loads a model. For models of
// 10k, 100k and 400k items x 64 dims (int8), the built worker in workerd (Miniflare, local KV)
// loads the model and `/v1/health` reports its wasm linear memory, which never shrinks: the
// peak of the wasm heap. Printed beside the shard bytes and the 48 MiB budget central-sync
// enforces (`EDGE_MODEL_BUDGET_BYTES`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../tests/support/edge.mjs';

const root = new URL('../', import.meta.url).pathname;
const cs = join(root, 'target/release/central-sync');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-memory-'));
const DIM = 64;

function writeNpy(path, n) {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${n}, ${DIM}), }`;
  const padded = header + ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from(Uint16Array.of(padded.length).buffer), Buffer.from(padded)]));
  let s = n;
  const rows = new Float32Array(10_000 * DIM);
  for (let done = 0; done < n; done += 10_000) {
    const count = Math.min(10_000, n - done);
    for (let i = 0; i < count * DIM; i++) rows[i] = ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    writeSync(fd, Buffer.from(rows.buffer, 0, count * DIM * 4));
  }
  closeSync(fd);
}

console.log('[bench-memory] items x 64 int8 | shard bytes | worker wasm memory after the load | ratio');
for (const n of [10_000, 100_000, 400_000]) {
  const dir = join(tmp, `m${n}`);
  writeNpy(join(tmp, `v${n}.npy`), n);
  writeFileSync(join(tmp, `ids${n}.txt`), Array.from({ length: n }, (_, i) => `sku-${i}\n`).join(''));
  execFileSync(cs, ['--log', 'warn', 'pack', '--embeddings', join(tmp, `v${n}.npy`), '--ids', join(tmp, `ids${n}.txt`), '--out', dir]);
  const kvDir = join(tmp, `kv${n}`);
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', dir, '--to', `dir:${kvDir}`]);
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
