// The 1M x 64 bench model paged (format 7) in Node, in a process of its own: wasm linear memory
// never shrinks, so its size after the run is the peak this model needed, with nothing else
// loaded before. The index shards are loaded whole; pages are read from disk when a request asks
// for them (Engine.tryRecommend), kept in an LRU cache of PAGE_CACHE_MIB (default 4), and the
// bench's 200 sessions are ranked. Afterwards the whole model is loaded too and every ranking
// compared (this grows memory, so it comes after the memory figure).
// Usage: node scripts/bench-paged.mjs [BENCH_DIR]   (BENCH_DIR/m1m-paged, m1m, m100k/sessions.json)
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { initSync, Engine, Session } from '../pkg/edgerec.js';

const root = new URL('../', import.meta.url).pathname;
const dir = process.argv[2] ?? join(root, 'target/bench');
const wasmExports = initSync({ module: readFileSync(join(root, 'pkg/edgerec_bg.wasm')) });
const wasmMiB = () => wasmExports.memory.buffer.byteLength / 2 ** 20;
const cacheBytes = Number(process.env.PAGE_CACHE_MIB ?? 4) * 2 ** 20;

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const pct = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const fmt = (ms) => `${ms.toFixed(3)} ms`;
const line = (s) => console.log(`[bench-paged] ${s}`);
const numbered = (d, prefix) => readdirSync(d).filter((f) => f.startsWith(prefix) && f.endsWith('.bin'))
  .sort((a, b) => parseInt(a.slice(prefix.length), 10) - parseInt(b.slice(prefix.length), 10))
  .map((f) => join(d, f));

const pagedDir = join(dir, 'm1m-paged');
const indexFiles = numbered(pagedDir, 'index-');
const pageFiles = numbered(pagedDir, 'page-');
const memoryBefore = wasmMiB();
let t = now();
const index = indexFiles.map((f) => new Uint8Array(readFileSync(f)));
const indexBytes = index.reduce((a, s) => a + s.length, 0);
const engine = Engine.fromShards(index);
const indexLoad = now() - t;
index.length = 0;
const memoryIndex = wasmMiB();

const sessions = JSON.parse(readFileSync(join(dir, 'm100k/sessions.json'), 'utf8')).map((s) => {
  const session = new Session();
  s.items.forEach((id, i) => session.observe(id, 'click', 1_700_000_000 + i * 60));
  return { ...s, session };
});

// The page cache: least recently used first out, trimmed to the budget after each request (a
// request's own pages stay until it is ranked).
const lru = new Map(); // page -> bytes
let cached = 0;
const use = (p) => { const b = lru.get(p); lru.delete(p); lru.set(p, b); };
function trim() {
  for (const [p, bytes] of lru) {
    if (cached <= cacheBytes) break;
    engine.dropPage(p);
    lru.delete(p);
    cached -= bytes;
  }
}
const stats = { reads: [], readBytes: [], rounds: [], cold: [], warm: [], readMs: [], pageBytes: [] };
function rank(s) {
  let got;
  let rounds = 0, reads = 0, readBytes = 0, readMs = 0;
  const t0 = now();
  for (;;) {
    got = engine.tryRecommend(s.session, s.options);
    rounds += 1;
    if (Array.isArray(got)) break;
    for (const p of got.missingPages) {
      const r0 = now();
      const bytes = readFileSync(pageFiles[p]);
      readMs += now() - r0;
      engine.addPage(bytes);
      lru.set(p, bytes.length);
      cached += bytes.length;
      reads += 1;
      readBytes += bytes.length;
      stats.pageBytes.push(bytes.length);
    }
  }
  const total = now() - t0;
  for (const p of engine.loadedPages) if (lru.has(p)) use(p);
  return { got, rounds, reads, readBytes, total, readMs };
}

// Each session once from the cache as earlier sessions left it, then again at once (every page
// it needs in memory: the ranking alone).
for (const s of sessions) {
  const r = rank(s);
  stats.reads.push(r.reads);
  stats.readBytes.push(r.readBytes);
  stats.rounds.push(r.rounds);
  stats.cold.push(r.total);
  stats.readMs.push(r.readMs);
  const w0 = now();
  const again = engine.tryRecommend(s.session, s.options);
  stats.warm.push(now() - w0);
  if (!Array.isArray(again)) throw new Error('pages dropped between two calls');
  s.paged = again.map((x) => x.id);
  trim();
}
const memoryRun = wasmMiB();
const pages = engine.pageCount;
const pageSizes = stats.pageBytes.length ? stats.pageBytes : [0];

line(`1M x 64 paged: ${indexFiles.length} index shards (${(indexBytes / 2 ** 20).toFixed(1)} MiB, loaded in ${fmt(indexLoad)}), ${pages} pages of about ${(median(pageSizes) / 1024).toFixed(0)} KiB`);
line(`per request over ${sessions.length} sessions, LRU page cache of ${(cacheBytes / 2 ** 20).toFixed(0)} MiB: pages read median ${median(stats.reads)}, p90 ${pct(stats.reads, 0.9)}, max ${Math.max(...stats.reads)} (${(median(stats.readBytes) / 1024).toFixed(0)} KiB median); asked ${Math.max(...stats.rounds)} times at most`);
line(`recommend 1M x 64 paged: median ${fmt(median(stats.warm))} with its pages loaded; ${fmt(median(stats.cold))} median, p90 ${fmt(pct(stats.cold, 0.9))} including reading its missing pages from disk (${fmt(median(stats.readMs))} of it in the reads) and checking them`);
line(`wasm memory with the 1M model paged: ${memoryRun.toFixed(1)} MiB after ${sessions.length} requests (index alone ${memoryIndex.toFixed(1)} MiB, empty ${memoryBefore.toFixed(1)} MiB; target: loaded model <= 40 MB)`);

// Rankings against the whole model (loaded now: memory is measured above).
const whole = Engine.fromShards(numbered(join(dir, 'm1m'), 'shard-').map((f) => new Uint8Array(readFileSync(f))));
let same = 0;
for (const s of sessions) {
  const want = whole.recommend(s.session, s.options).map((x) => x.id);
  if (JSON.stringify(want) === JSON.stringify(s.paged)) same += 1;
}
line(`rankings equal to the whole model's: ${same} of ${sessions.length}`);
if (same !== sessions.length) process.exitCode = 1;
