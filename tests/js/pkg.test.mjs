// The npm package (pkg/) in Node: the JS API of DESIGN.md, its errors, and exact parity with the
// native engine on the cases written by `cargo run --example parity_fixture` (PARITY_DIR).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { initSync, Engine, Session } from '../../pkg/edgerec.js';

const root = new URL('../../', import.meta.url).pathname;
initSync({ module: readFileSync(join(root, 'pkg/edgerec_bg.wasm')) });
const dir = process.env.PARITY_DIR ?? join(root, 'target/parity');
const shardFiles = readdirSync(dir).filter((f) => f.startsWith('shard-')).sort();
const shards = shardFiles.map((f) => new Uint8Array(readFileSync(join(dir, f))));
const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));

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
