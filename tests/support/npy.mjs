// Random float32 matrices as .npy files, for packing synthetic models with `central-sync pack`
// (benchmarks and fault runs). Written in blocks, so large models never sit in memory twice.
import { execFileSync } from 'node:child_process';
import { openSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes a `rows x dim` float32 .npy of uniform values in [-1, 1) from a seeded LCG; with
 * `clusters`, rows gathered around that many centres instead. */
export function writeRandomNpy(path, rows, dim, seed, { clusters = 0 } = {}) {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${dim}), }`;
  const padded = header + ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from(Uint16Array.of(padded.length).buffer), Buffer.from(padded)]));
  let s = seed;
  const block = new Float32Array(10_000 * dim);
  for (let done = 0; done < rows; done += 10_000) {
    const count = Math.min(10_000, rows - done);
    for (let i = 0; i < count * dim; i++) block[i] = ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    if (clusters > 0) {
      // Row r near the centre of cluster r % clusters: the uniform draw scaled down, plus the
      // centre (uniform in [-1, 1) too, from a second generator), as item embeddings cluster.
      for (let r = 0; r < count; r++) {
        let c = ((done + r) % clusters) * 7919 + 1;
        for (let j = 0; j < dim; j++) {
          c = (c * 1103515245 + 12345) % 2147483648;
          block[r * dim + j] = 0.25 * block[r * dim + j] + (c / 2147483648) * 2 - 1;
        }
      }
    }
    writeSync(fd, Buffer.from(block.buffer, 0, count * dim * 4));
  }
  closeSync(fd);
}

/** A random `rows x dim` model (ids `sku-0`…) packed by `central-sync pack` into `dir/model` and
 * published to a directory KV, `dir/kv` (returned), as the benchmarks and profiles load it; with
 * `pageItems`, packed as a paged model (`--page-items`); with `clusters`, clustered rows. */
export function publishRandomModel(dir, rows, dim, seed, { pageItems, clusters } = {}) {
  const cs = new URL('../../target/release/central-sync', import.meta.url).pathname;
  writeRandomNpy(join(dir, 'v.npy'), rows, dim, seed, { clusters });
  writeFileSync(join(dir, 'ids.txt'), Array.from({ length: rows }, (_, i) => `sku-${i}\n`).join(''));
  const paged = pageItems ? ['--page-items', String(pageItems)] : [];
  execFileSync(cs, ['--log', 'warn', 'pack', '--embeddings', join(dir, 'v.npy'), '--ids', join(dir, 'ids.txt'), '--out', join(dir, 'model'), ...paged]);
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', join(dir, 'model'), '--to', `dir:${join(dir, 'kv')}`]);
  return join(dir, 'kv');
}
