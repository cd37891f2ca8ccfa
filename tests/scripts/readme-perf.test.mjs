// scripts/readme-perf.py, which `make bench` runs to rewrite the README's performance table:
// figures read from a bench summary, verdicts against the targets, missing lines reported as
// missing, and a README without the markers refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const root = new URL('../../', import.meta.url).pathname;
const script = join(root, 'scripts/readme-perf.py');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-readme-perf-'));

// Lines in the formats the benches print (scripts/bench-node.mjs, bench-workerd.mjs, bench-train.py).
const summary = [
  '[bench-node] recommend 100k x 64 int8, session(5)+context, top-10: median 0.280 ms, p99 0.400 ms (target <= 0.300 ms)',
  '[bench-node]   hnswlib-wasm BruteforceSearch (ip, f32): median 4.409 ms -> edgerec is 15.7x faster (target >= 15x)',
  '[bench-node]   recall@10 of int8 path vs exact float32: 0.9400 over 200 queries (target >= 0.95)',
  '[bench-node] session update + query vector: median 10.2 µs (target <= 50 µs)',
  '[bench-node] session encoder forward + query vector, 24-click session (all the session holds), 100k x 64 model: median 0.180 ms (target <= 0.15 ms); the same query without the encoder 23.7 µs -> the encoder adds 0.156 ms',
  '[bench-paged] per request over 200 sessions, LRU page cache of 4 MiB: pages read median 9, p90 17, max 42 (1217 KiB median); asked 3 times at most',
  '[bench-paged] recommend 1M x 64 paged: median 0.626 ms with its pages loaded; 2.516 ms median, p90 5.316 ms including reading its missing pages from disk (0.317 ms of it in the reads) and checking them',
  '[bench-paged] wasm memory with the 1M model paged: 38.6 MiB after 200 requests (index alone 28.7 MiB, empty 1.1 MiB; target: loaded model <= 40 MB)',
  '[bench-memory] 1M paged (1102 pages, page cache 16 MiB) | index 19.9 MiB | 35.5 MiB after 200 ranked sessions (21.5 MiB after the load); request median 1.6 ms, p90 4.2 ms, pages read from the published directory | target: loaded model <= 40 MB',
  '[bench-node] pkg/edgerec_bg.wasm: 186070 bytes, 78.3 KiB gzip (target <= 150 KB)',
  '[bench-workerd] 100,000 x 64 int8 model, simd128 build, workerd serve run directly (own config, no Miniflare) on 127.0.0.1, wrk 2 threads x 50 connections x 15 s, session token (full ranking per request)',
  '[bench-workerd]   requests/s 9000.00, p50 1.00ms, p99 900.00us (target p99 <= 10 ms); errors: none',
  '[bench-workerd]   one connection: requests/s 2021.95, p50 468.00us, p99 20.46ms',
  '[bench-workerd]   as each request took (oha, no correction): 50 connections 1360.47 req/s, p50 37.266 ms, p99 45.805 ms, p99.9 133.843 ms, max 138.159 ms, errors: none; one connection 1324.85 req/s, p50 0.722 ms, p99 0.918 ms',
  "[bench-workerd]   Little's law: 50 connections always waiting at 1360 req/s average 36.8 ms per request; a p99 <= 10 ms at 50 connections needs more than 5,000 req/s from this one isolate",
  '[bench-workerd]   at a fixed rate, half that throughput (oha -q 680 --latency-correction, 50 connections, each request timed from when it was due): 680.00 req/s, p50 1.100 ms, p99 8.500 ms, p99.9 20.000 ms, max 31.000 ms, errors: none',
  '[bench-workerd] relaxed-simd vs simd128: ranked requests/s 1.24x (50 connections), 1.13x (one connection); cold start 63.3 vs 49.5 ms (medians)',
  '[bench-workerd] 100,000 x 64 int8 model, relaxed-simd build, workerd serve under Miniflare\'s config (for comparison) on 127.0.0.1, wrk 2 threads x 50 connections x 15 s, session token (full ranking per request)',
  '[bench-workerd]   requests/s 1900.00, p50 20.00ms, p99 53.10ms (target p99 <= 10 ms); errors: none',
  '[bench-workerd] runtime floor, a worker that answers a fixed JSON body (workerd run directly, same wrk loads): 50 connections 21000.00 req/s, p50 2.51ms, p99 187.09ms, errors: none; one connection p50 98.00us, p99 225.93ms',
  '[bench-workerd] runtime floor as each request took (oha, no correction): 50 connections 19923.81 req/s, p50 1.592 ms, p99 18.884 ms, p99.9 272.715 ms, max 399.902 ms, errors: none; one connection 14852.00 req/s, p50 0.053 ms, p99 0.090 ms',
  "[bench-workerd] runtime floor at a fixed rate, the relaxed-simd worker's (oha -q 9962 --latency-correction, 50 connections, each request timed from when it was due): 9961.50 req/s, p50 0.300 ms, p99 2.600 ms, p99.9 20.000 ms, max 29.000 ms, errors: none",
  "[bench-workerd] load generator's floor, Node's http server answering the same body (no workerd), oha -q 9962 --latency-correction, 50 connections: 9961.90 req/s, p50 0.200 ms, p99 0.740 ms, p99.9 5.310 ms, max 46.100 ms, errors: none",
  '[bench-train] 1M-event log: 16.2 min (target <= 15 min on this machine: NOT met)',
].join('\n');

function regenerate(readme) {
  const s = join(tmp, 'summary.txt');
  const r = join(tmp, 'README.md');
  writeFileSync(s, summary);
  writeFileSync(r, readme);
  const run = spawnSync('python3', [script, s, r], { encoding: 'utf8' });
  return { run, text: readFileSync(r, 'utf8') };
}

const row = (text, figure) => text.split('\n').find((l) => l.startsWith(`| ${figure} |`));

test('figures, verdicts and missing lines', () => {
  const { run, text } = regenerate('# x\n\nbefore\n<!-- perf:begin -->\nold table\n<!-- perf:end -->\nafter\n');
  assert.equal(run.status, 0, run.stderr);
  assert.match(text, /^# x\n\nbefore\n<!-- perf:begin -->\n/);
  assert.match(text, /\n<!-- perf:end -->\nafter\n$/);
  assert.doesNotMatch(text, /old table/);
  assert.match(row(text, 'Node, simd128: recommend 100k x 64, top-10, median'), /\| 0\.280 ms \| ≤ 0\.30 ms \| met \|$/);
  assert.match(row(text, '… vs hnswlib-wasm brute force, same run'), /\| 15\.7x \| ≥ 15x \| met \|$/);
  assert.match(row(text, 'recall@10 vs exact f32 (100k)'), /\| 0\.9400 \| ≥ 0\.95 \| \*\*missed\*\* \|$/);
  assert.match(row(text, 'Node: session update + query vector'), /\| 10\.2 µs \| ≤ 50 µs \| met \|$/);
  assert.match(row(text, 'Node: session encoder forward + query vector, 24-click session (the most a session holds)'), /\| 0\.180 ms \| ≤ 0\.15 ms \| \*\*missed\*\* \|$/);
  // The paged 1M model: memory over the target by 0.5 MB, its ranking within.
  assert.match(row(text, '… the same model paged (format 7): index shards loaded, pages read as requests ask, an LRU page cache of 4 MiB; pages per request median 9, p90 17'), /\| 38\.6 MiB after 200 requests \(index 28\.7 MiB\) \| ≤ 40 MB \| \*\*missed\*\* \|$/);
  assert.match(row(text, '… its recommend, median: with its pages loaded / reading the missing ones from disk'), /\| 0\.626 ms \/ 2\.516 ms \| ≤ 2 ms \| met \|$/);
  assert.match(row(text, 'Worker on workerd: wasm memory, 1M x 64 paged (clustered embeddings; index, and a page cache of 16 MiB)'), /\| 35\.5 MiB after 200 ranked sessions \(index 19\.9 MiB; request median 1\.6 ms\) \| ≤ 40 MB \| met \|$/);
  assert.match(row(text, '`pkg/edgerec_bg.wasm` gzip'), /\| 78\.3 KiB \| ≤ 150 KB \| met \|$/);
  // wrk prints sub-millisecond latencies in µs ("us").
  const wrkRow = (build) => `Worker on workerd run directly (${build}), 50 connections: p99 as wrk reports it (corrected for coordinated omission)`;
  assert.match(row(text, wrkRow('simd128')), /\| met \|$/);
  // oha's uncorrected figures sit under the wrk row of the same build.
  const lines = text.split('\n');
  const oha = lines[lines.indexOf(row(text, wrkRow('simd128'))) + 1];
  assert.equal(oha, '| … the same, as each request took (oha, no correction): p99 | 45.805 ms at 50 connections (1360.47 req/s, errors: none); one connection p50 0.722 ms, p99 0.918 ms | ≤ 10 ms, no errors | **missed** |');
  // Below saturation: the fixed-rate run sits under the oha row, with its own verdict.
  assert.equal(lines[lines.indexOf(oha) + 1], '| … the same at a fixed rate of half that throughput (open loop, each request timed from when it was due): p99 | 8.500 ms at 680 req/s over 50 connections (p50 1.100 ms, errors: none) | ≤ 10 ms, no errors | met |');
  assert.match(row(text, '… the runtime\'s floor at the worker\'s fixed rate: p99'), /\| 2\.600 ms at 9962 req\/s \| \(baseline\) \| — \|$/);
  assert.match(row(text, '… Node\'s http server under the same fixed-rate load (what oha and the machine add): p99'), /\| 0\.740 ms at 9962 req\/s \| \(baseline\) \| — \|$/);
  assert.match(row(text, '… the runtime\'s floor, as each request took (oha): p99'), /\| 18\.884 ms at 50 connections \(19923\.81 req\/s\), 0\.090 ms at one \| \(baseline\) \| — \|$/);
  assert.match(row(text, 'Worker on workerd run directly (relaxed-simd): cold start, 100k model in KV'), /\| 63\.3 ms \| ≤ 50 ms \| \*\*missed\*\* \|$/);
  assert.match(row(text, 'Worker on workerd run directly (simd128): cold start, 100k model in KV'), /\| 49\.5 ms \| ≤ 50 ms \| met \|$/);
  // The comparison and the floor are shown, without a verdict.
  assert.match(row(text, '… the same worker under Miniflare\'s config (relaxed-simd build), 50 connections: p99'), /\| 53\.10ms \(1900\.00 req\/s\) \| \(comparison\) \| — \|$/);
  assert.match(row(text, '… a worker answering a fixed JSON body on workerd run directly, same wrk loads (the runtime\'s floor): p99'), /\| 187\.09ms at 50 connections \(21000\.00 req\/s\), 225\.93ms at one \| \(baseline\) \| — \|$/);
  assert.match(row(text, 'Training a 1M-event log (one core)'), /\| 16\.2 min \| ≤ 15 min \| \*\*missed\*\* \|$/);
  // Benches that did not run are reported as such, not carried over.
  assert.match(row(text, 'Chromium, simd128: 100k median'), /\| not in this run \| ≤ 0\.30 ms \| not in this run \|$/);
  assert.match(row(text, wrkRow('relaxed-simd')), /not in this run \|$/);
});

test('a README without the markers is refused and left as it was', () => {
  const { run, text } = regenerate('# no markers\n');
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, /markers/);
  assert.equal(text, '# no markers\n');
});

test('the committed README has the markers', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const [begin, end] = [readme.indexOf('<!-- perf:begin -->'), readme.indexOf('<!-- perf:end -->')];
  assert.ok(begin >= 0 && end > begin, 'README.md needs <!-- perf:begin --> before <!-- perf:end -->');
});
