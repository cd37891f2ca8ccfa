// Times two bench models of the same items in one Node process, in alternating rounds over the
// bench's sessions, and checks that they rank the same top 10 (by id). For comparing two writers:
// write target/bench with each (`cargo run --release --example bench_model --features writer --
// DIR`, at each commit), then
// `node scripts/compare-models.mjs DIR_A DIR_B` (env: M=m100k for the 100k model, default m1m;
// WASM=edgerec_relaxed_bg.wasm with `node --experimental-wasm-relaxed-simd --no-liftoff` for the
// relaxed build). Not part of `make test` or `make bench`.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { initSync, Engine, Session } from '../pkg/edgerec.js';

const root = new URL('../', import.meta.url).pathname;
initSync({ module: readFileSync(join(root, 'pkg', process.env.WASM ?? 'edgerec_bg.wasm')) });
const model = process.env.M ?? 'm1m';
const shardsOf = (d) => readdirSync(d).filter((f) => /^shard-\d+\.bin$/.test(f))
  .sort((a, b) => parseInt(a.slice(6)) - parseInt(b.slice(6)))
  .map((f) => new Uint8Array(readFileSync(join(d, f))));
const [a, b] = process.argv.slice(2);
if (!a || !b) throw new Error('usage: node scripts/compare-models.mjs DIR_A DIR_B');
const engines = [a, b].map((d) => Engine.fromShards(shardsOf(join(d, model))));
const sessions = JSON.parse(readFileSync(join(b, 'm100k/sessions.json'), 'utf8')).map((s) => {
  const session = new Session();
  s.items.forEach((id, t) => session.observe(id, 'click', 1_700_000_000 + t * 60));
  return { session, options: s.options };
});
const now = () => Number(process.hrtime.bigint()) / 1e6;
const time = (e) => sessions.map((s) => { const t = now(); e.recommend(s.session, s.options); return now() - t; });
engines.forEach((e) => { time(e); time(e); });
const samples = [[], []];
for (let r = 0; r < 6; r++) engines.forEach((e, i) => samples[i].push(...time(e)));
const median = (x) => { const s = [...x].sort((p, q) => p - q); return s[s.length >> 1]; };
const same = sessions.filter((s) => {
  const [x, y] = engines.map((e) => e.recommend(s.session, s.options).map((r) => r.id).join());
  return x === y;
}).length;
const [ma, mb] = samples.map(median);
console.log(`[compare-models] ${model}: ${a} median ${ma.toFixed(3)} ms, ${b} median ${mb.toFixed(3)} ms (${(ma / mb).toFixed(2)}x); identical top-10 lists ${same}/${sessions.length}`);
