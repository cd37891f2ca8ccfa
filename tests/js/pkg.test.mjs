// The npm package (pkg/) in Node: the JS API of DESIGN.md, its errors, and exact parity with the
// native engine on the cases written by `cargo run --example parity_fixture` (PARITY_DIR).
// EDGEREC_PKG_WASM names the build under test (default edgerec_bg.wasm); scripts/test-js.sh runs
// the file once per build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { initSync, Engine, Session, wasmFileName } from '../../pkg/edgerec.js';

const root = new URL('../../', import.meta.url).pathname;
const build = process.env.EDGEREC_PKG_WASM ?? 'edgerec_bg.wasm';
initSync({ module: readFileSync(join(root, 'pkg', build)) });
const dir = process.env.PARITY_DIR ?? join(root, 'target/parity');
const shardFiles = readdirSync(dir).filter((f) => f.startsWith('shard-')).sort();
const shards = shardFiles.map((f) => new Uint8Array(readFileSync(join(dir, f))));
const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
const firstPass = JSON.parse(readFileSync(join(dir, 'first-pass.json'), 'utf8'));

test('the loader picks a build this engine runs correctly', () => {
  const relaxedBytes = readFileSync(join(root, 'pkg/edgerec_relaxed_bg.wasm'));
  const choice = wasmFileName();
  if (!WebAssembly.validate(relaxedBytes)) {
    assert.equal(choice, 'edgerec_bg.wasm');
  } else if (build === 'edgerec_relaxed_bg.wasm') {
    // This run has relaxed SIMD and a working compiler for it (see scripts/test-js.sh).
    assert.equal(choice, 'edgerec_relaxed_bg.wasm');
  }
  assert.equal(wasmFileName(), choice, 'the choice is made once');
});

test("Node 20's baseline compiler, which gets relaxed dot products wrong, gets the simd128 build", { skip: !process.versions.v8.startsWith('11.3.') }, async () => {
  const { execFileSync } = await import('node:child_process');
  const script = `import('${join(root, 'pkg/edgerec.js')}').then((m) => console.log(m.wasmFileName()))`;
  const pick = (flags) => execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' }).trim();
  assert.equal(pick([]), 'edgerec_bg.wasm');
  assert.equal(pick(['--experimental-wasm-relaxed-simd']), 'edgerec_bg.wasm');
  assert.equal(pick(['--experimental-wasm-relaxed-simd', '--no-liftoff']), 'edgerec_relaxed_bg.wasm');
});

test('fromShards loads a multi-shard model in any order', () => {
  assert.ok(shards.length > 1);
  const engine = Engine.fromShards([...shards].reverse());
  assert.equal(engine.itemCount, 3000);
  assert.equal(engine.dim, 64);
  assert.match(engine.modelId, /^[0-9a-f]{16}$/);
  assert.ok(engine.has('item-42'));
  assert.ok(!engine.has('item-3000'));
  assert.deepEqual(engine.itemCategories('item-13'), ['cat1']);
});

test('rankings equal the native engine, ids and scores bit for bit', () => {
  const engine = Engine.fromShards(shards);
  for (const c of cases) {
    const session = new Session();
    for (const [id, type, ts] of c.events) session.observe(id, type, ts);
    const got = engine.recommend(session, c.options);
    assert.deepEqual(got.map((r) => r.id), c.ids, JSON.stringify(c.options));
    assert.deepEqual(got.map((r) => r.score), c.scores);
    assert.deepEqual(got.map((r) => r.propensity ?? null), c.propensities);
  }
});

test('two-stage rankings (first-pass codes, then int8) equal the native engine too', () => {
  const engine = Engine.fromShards(shards);
  // 3,000 items is below the size where the two-stage scan is on by default.
  assert.equal(engine.setFirstPass(firstPass.keep), true);
  for (const c of cases) {
    const session = new Session();
    for (const [id, type, ts] of c.events) session.observe(id, type, ts);
    const got = engine.recommend(session, c.options);
    assert.deepEqual(got.map((r) => r.id), c.twoStage.ids, JSON.stringify(c.options));
    assert.deepEqual(got.map((r) => r.score), c.twoStage.scores);
    assert.deepEqual(got.map((r) => r.propensity ?? null), c.twoStage.propensities);
  }
  assert.equal(engine.setFirstPass(0), false);
});

test('a paged model ranks as the whole one, loading the pages each request asks for', () => {
  const pagedDir = join(dir, 'paged');
  const files = readdirSync(pagedDir);
  const numbered = (prefix) => files.filter((f) => f.startsWith(prefix))
    .sort((a, b) => parseInt(a.slice(prefix.length), 10) - parseInt(b.slice(prefix.length), 10))
    .map((f) => new Uint8Array(readFileSync(join(pagedDir, f))));
  const index = numbered('index-');
  const pages = numbered('page-');
  const engine = Engine.fromShards(index);
  assert.equal(engine.paged, true);
  assert.equal(engine.pageCount, pages.length);
  assert.equal(engine.setFirstPass(firstPass.keep), true);
  const session0 = new Session();
  session0.observe('item-5', 'click', 1_700_000_000);
  assert.throws(() => engine.recommend(session0, { k: 5 }), /tryRecommend/);
  for (const c of cases) {
    for (const p of engine.loadedPages) assert.equal(engine.dropPage(p), true);
    const session = new Session();
    for (const [id, type, ts] of c.events) session.observe(id, type, ts);
    let got;
    let asked = 0;
    for (;;) {
      got = engine.tryRecommend(session, c.options);
      asked += 1;
      if (Array.isArray(got)) break;
      assert.ok(got.missingPages.length > 0 && asked <= 2, JSON.stringify(got));
      for (const p of got.missingPages) engine.addPage(pages[p]);
    }
    assert.ok(engine.loadedPageBytes > 0);
    assert.deepEqual(got.map((r) => r.id), c.twoStage.ids, JSON.stringify(c.options));
    assert.deepEqual(got.map((r) => r.score), c.twoStage.scores);
    assert.deepEqual(got.map((r) => r.propensity ?? null), c.twoStage.propensities);
    assert.deepEqual(engine.recommend(session, c.options), got, 'recommend, once the pages are in');
  }
  // Pages are checked: another page's bytes under a number, or a whole shard, are refused.
  assert.throws(() => engine.addPage(shards[0]), /not a page/);
  const forged = new Uint8Array(pages[1]);
  forged[100] ^= 1;
  assert.throws(() => engine.addPage(forged), /checksum/);
  assert.throws(() => Engine.fromShards(pages), /these are pages/);
});

test('session bytes round-trip and stay small', () => {
  const s = new Session();
  for (let i = 0; i < 40; i++) s.observe(`item-${i}`, 'click', 1_700_000_000 + i * 30);
  assert.equal(s.length, 24);
  const bytes = s.toBytes();
  assert.ok(bytes.length <= 300, `${bytes.length} bytes`);
  const back = Session.fromBytes(bytes);
  assert.deepEqual(back.toBytes(), bytes);
  const engine = Engine.fromShards(shards);
  assert.deepEqual(engine.recommend(back, { k: 5 }), engine.recommend(s, { k: 5 }));
});

test('errors are thrown as Error with messages, never a crash', () => {
  const engine = Engine.fromShards(shards);
  const s = new Session();
  assert.throws(() => s.observe('item-1', 'teleport', 1), /unknown event type "teleport"/);
  assert.throws(() => s.observe('item-1', 'click', NaN), /unix time/);
  assert.throws(() => Session.fromBytes(new Uint8Array(600)), /at most/);
  assert.throws(() => Session.fromBytes(new Uint8Array([9, 0, 0])), /version/);
  assert.throws(() => engine.recommend(s, { k: -1 }), /option `k`/);
  assert.throws(() => engine.recommend(s, { device: 'fridge' }), /unknown device/);
  assert.throws(() => engine.recommend(s, { allowCategories: ['nope'] }), /unknown category/);
  assert.throws(() => Engine.fromShards([]), /no shards/);
  assert.throws(() => Engine.fromShards(['x']), /not a Uint8Array/);
  assert.throws(() => Engine.fromShards(shards.slice(1)), /do not form one model/);
  const corrupt = shards[0].slice();
  corrupt[corrupt.length - 5] ^= 0xff;
  assert.throws(() => Engine.fromShards([corrupt, ...shards.slice(1)]), /shard 0: shard checksum mismatch/);
  // The engine still works after all of that.
  assert.equal(engine.recommend(s, { k: 3 }).length, 3);
});

test('unknown items are ignored and session items never returned', () => {
  const engine = Engine.fromShards(shards);
  const s = new Session();
  s.observe('not-in-model', 'click', 10);
  s.observe('item-9', 'click', 11);
  const got = engine.recommend(s, { k: 50, exclude: ['item-21', 'also-not-there'] });
  assert.equal(got.length, 50);
  assert.ok(got.every((r) => r.id !== 'item-9' && r.id !== 'item-21'));
  const filtered = engine.recommend(s, { k: 10, allowCategories: ['cat4'] });
  assert.ok(filtered.every((r) => engine.itemCategories(r.id).includes('cat4')));
});

test('exposure records a ranked list as the worker takes it: positions, scores, propensities', () => {
  const engine = Engine.fromShards(shards);
  const session = new Session();
  session.observe('item-42', 'click', 1_700_000_000);
  const plain = engine.recommend(session, { k: 5 });
  const x = engine.exposure(plain, 'v1700000000-abc');
  assert.match(x.id, /^b[0-9a-f]{32}$/);
  assert.notEqual(engine.exposure(plain, 'v1').id, x.id, 'a fresh id per list');
  assert.equal(x.model, 'v1700000000-abc');
  assert.deepEqual(x.items.map((it) => it.item), plain.map((r) => r.id));
  assert.deepEqual(x.items.map((it) => it.position), [0, 1, 2, 3, 4]);
  assert.deepEqual(x.items.map((it) => it.score), plain.map((r) => r.score));
  assert.ok(x.items.every((it) => it.propensity === 1), 'a deterministic list: propensity 1');
  // An explored list carries the core's propensities.
  const explored = engine.recommend(session, { k: 5, explore: { epsilon: 0.3, seed: 7 } });
  const y = engine.exposure(explored, 'v1', 'page-view-1');
  assert.equal(y.id, 'page-view-1');
  assert.deepEqual(y.items.map((it) => it.propensity), explored.map((r) => r.propensity));
  assert.ok(y.items.some((it) => it.propensity < 1));
  assert.throws(() => engine.exposure([], 'v1'), /1 to 100 items/);
  assert.throws(() => engine.exposure([{ id: 'item-3000', score: 1 }], 'v1'), /list\[0\] is not an item/);
  assert.throws(() => engine.exposure(plain, ''), /served version/);
  assert.throws(() => engine.exposure([{ id: 'item-1', propensity: 2 }], 'v1'), /propensity/);
});
