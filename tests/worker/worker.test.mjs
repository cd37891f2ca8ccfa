// The real built worker (edge-worker/build) under Miniflare (workerd) with real local KV: a
// model trained and published by central-sync, sessions, context, bad input, corrupt models.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../support/edge.mjs';
import { initSync, Engine, Session } from '../../pkg/edgerec.js';

const root = new URL('../../', import.meta.url).pathname;
const cs = join(root, 'target/release/central-sync');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-worker-'));
const kvDir = join(tmp, 'kv');
let mf, kv;

const items = new Map(readFileSync(join(root, 'data/ml-100k/items.csv'), 'utf8').trim().split('\n').slice(1).map((line) => {
  const id = line.split(',')[0];
  const genres = line.slice(line.lastIndexOf(',') + 1).split('|');
  return [id, genres];
}));

function publish(modelDir) {
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', modelDir, '--to', `dir:${kvDir}`]);
}

const syncKv = () => copyDirToKv(kvDir, kv);

/** The section kinds of a shard's section table (see src/format.rs: 64-byte header, the section
 * count at byte 16, then 24-byte entries whose first u32 is the kind). */
function sectionKinds(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(16, true);
  return Array.from({ length: count }, (_, i) => view.getUint32(64 + 24 * i, true));
}

const get = (path, headers = {}) => mf.dispatchFetch(`http://localhost${path}`, { headers });
const post = (path, body, headers = {}) => mf.dispatchFetch(`http://localhost${path}`, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });
const ctx = 'device=desktop&geohash=9q8yy&ts=893286638&tz_offset_min=0';
/**
 * A stand-in for central-sync's ingest endpoint on 127.0.0.1: records every request and answers
 * the n-th (from 1) with `status(n)`.
 */
async function fakeIngest(status) {
  const { createServer } = await import('node:http');
  const received = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ auth: req.headers.authorization, type: req.headers['content-type'], path: req.url, body: JSON.parse(body) });
      const code = status(received.length);
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(code < 300 ? '{"stored":1}' : '{"error":{"code":"store_failed","message":"retry later"}}');
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { received, url: `http://127.0.0.1:${server.address().port}/v1/events`, close: () => server.close() };
}

/** Waits out the backoff a failed model load set (`/v1/health` says how long). */
const waitForRetry = (health) => new Promise((ok) => setTimeout(ok, health.loads.retry_in_ms + 50));

before(async () => {
  for (const [name, extra] of [['m1', []], ['m2', ['--seed', '11']]]) {
    execFileSync(cs, ['--log', 'warn', 'train', '--events', join(root, 'data/ml-100k/events.csv'), '--items', join(root, 'data/ml-100k/items.csv'),
      '--out', join(tmp, name), '--epochs', '3', '--dim', '16', '--no-tune', '--encoder-epochs', '1', '--alpha', '4', '--beta', '1', ...extra]);
  }
  mf = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', MAX_K: '100', DEFAULT_K: '10', PRECOMPUTED_TTL_SECONDS: '60', INGEST_URL: '' });
  kv = await mf.getKVNamespace('MODELS');
});

after(async () => { await mf?.dispose(); });

test('no model: fallback answer, health says so', async () => {
  const r = await get('/v1/recommendations');
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.fallback, true);
  assert.deepEqual(body.items, []);
  const h = await (await get('/v1/health')).json();
  assert.equal(h.status, 'fallback');
  assert.equal(h.last_error.code, 'no_model');
  assert.match(h.last_error.message, /no model published/);
  // workerd has relaxed SIMD and computes the probe right, so the bundle runs its relaxed build
  // (whose rankings the tests below compare with the simd128 package's).
  assert.equal(h.wasm_build, 'relaxed-simd');
});

test('serves a published model; clicks move the ranking at once', async () => {
  publish(join(tmp, 'm1'));
  await syncKv();
  const version = readFileSync(join(kvDir, 'models/current'), 'utf8');
  const h = await (await get('/v1/health')).json();
  assert.equal(h.status, 'ok');
  assert.equal(h.model.version, version);
  assert.equal(h.model.items, 1682);

  const before = await (await get(`/v1/recommendations?k=10&${ctx}`)).json();
  assert.equal(before.fallback, false);
  assert.equal(before.items.length, 10);
  assert.equal(before.model, version);

  // The three most-rated films whose only genre is Horror are clicked: the next list holds
  // more horror.
  const counts = new Map();
  for (const line of readFileSync(join(root, 'data/ml-100k/events.csv'), 'utf8').split('\n').slice(1)) {
    const item = line.split(',')[1];
    counts.set(item, (counts.get(item) ?? 0) + 1);
  }
  const horror = [...items].filter(([, g]) => g.length === 1 && g[0] === 'Horror').map(([id]) => id)
    .sort((a, b) => (counts.get(b) ?? 0) - (counts.get(a) ?? 0)).slice(0, 3);
  const share = (list) => list.items.filter((x) => items.get(x.id)?.includes('Horror')).length / list.items.length;
  const res = await post('/v1/events', JSON.stringify(horror.map((item, i) => ({ item, type: 'click', ts: 893286600 + i }))));
  assert.equal(res.status, 200);
  const ev = await res.json();
  assert.equal(ev.session_events, 3);
  assert.match(res.headers.get('set-cookie'), /^edgerec_session=[^;]+; Max-Age=\d+; Path=\/; HttpOnly; Secure; SameSite=Lax/);
  const after = await (await get(`/v1/recommendations?k=10&${ctx}`, { 'X-Edgerec-Session': ev.session })).json();
  assert.equal(after.session_events, 3);
  assert.ok(share(after) > share(before), `horror share ${share(before)} -> ${share(after)}`);
  assert.ok(after.items.every((x) => !horror.includes(x.id)), 'clicked items are not recommended again');

  // The cookie works as well as the header, and the worker ranks exactly as the core does.
  const cookie = res.headers.get('set-cookie').split(';')[0];
  const viaCookie = await (await get(`/v1/recommendations?k=10&${ctx}`, { Cookie: cookie })).json();
  assert.deepEqual(viaCookie.items, after.items);
  initSync({ module: readFileSync(join(root, 'pkg/edgerec_bg.wasm')) });
  const manifest = await (await get('/v1/model')).json();
  const shards = await Promise.all(manifest.shards.map(async (s, i) => new Uint8Array(await (await get(`/v1/model/${version}/shard-${i}.bin`)).arrayBuffer())));
  assert.deepEqual(shards[0], new Uint8Array(readFileSync(join(kvDir, `models/${version}/shard-0.bin`))));
  const engine = Engine.fromShards(shards);
  const s = new Session();
  horror.forEach((item, i) => s.observe(item, 'click', 893286600 + i));
  const local = engine.recommend(s, { k: 10, device: 'desktop', geohash: '9q8yy', ts: 893286638, tzOffsetMin: 0 });
  assert.deepEqual(after.items.map((x) => x.id), local.map((x) => x.id));
});

test('bad input gets JSON errors; forged tokens get a fresh session', async () => {
  const malformed = await post('/v1/events', '{"item": ');
  assert.equal(malformed.status, 400);
  assert.equal((await malformed.json()).error.code, 'malformed_json');
  const unknown = await post('/v1/events', JSON.stringify({ item: 'no-such-film' }));
  assert.equal(unknown.status, 400);
  const u = await unknown.json();
  assert.equal(u.error.code, 'unknown_item');
  assert.match(u.error.message, /no-such-film/);
  assert.equal((await post('/v1/events', JSON.stringify({ item: '1', type: 'teleport' }))).status, 400);
  // The contract's one validation: a time the ingest would reject is rejected here too.
  assert.equal((await post('/v1/events', JSON.stringify({ item: '1', ts: 5 }))).status, 400);
  assert.equal((await get('/v1/recommendations?k=0')).status, 400);
  assert.equal((await get('/v1/recommendations?device=fridge')).status, 400);
  const nf = await get('/v2/nothing');
  assert.equal(nf.status, 404);
  assert.equal((await nf.json()).error.code, 'not_found');
  assert.equal((await mf.dispatchFetch('http://localhost/v1/events', { method: 'GET' })).status, 405);

  const res = await post('/v1/events', JSON.stringify({ item: '50' }));
  const token = (await res.json()).session;
  // M7: the token is sealed (version 2, one base64url part); token.rs's tests check that its
  // bytes contain neither the visitor id nor the session.
  assert.doesNotMatch(token, /\./);
  const raw = Buffer.from(token, 'base64url');
  assert.equal(raw[0], 2);
  const flipped = Buffer.from(raw);
  flipped[flipped.length >> 1] ^= 1;
  const forged = flipped.toString('base64url');
  const truncated = raw.subarray(0, raw.length - 1).toString('base64url');
  for (const bad of [forged, truncated, 'garbage', 'a'.repeat(5000), `${token}.x`]) {
    const r = await get(`/v1/recommendations?${ctx}`, { 'X-Edgerec-Session': bad });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).session_events, 0);
  }
  const ok = await (await get(`/v1/recommendations?${ctx}`, { 'X-Edgerec-Session': token })).json();
  assert.equal(ok.session_events, 1);
});

test('session-less lists come from the Cache API per context bucket', async () => {
  const a = await get(`/v1/recommendations?k=7&${ctx}`);
  const b = await get(`/v1/recommendations?k=7&${ctx}`);
  assert.equal(b.headers.get('x-edgerec-cache'), 'hit');
  assert.deepEqual((await a.json()).items, (await b.json()).items);
  const withSession = await get(`/v1/recommendations?k=7&${ctx}&exclude=50`);
  assert.equal(withSession.headers.get('x-edgerec-cache'), 'bypass');
});

test('a ranked session-less list reaches the Cache API after the answer, for other isolates', async () => {
  // Two workerd processes sharing one persisted cache, one after the other: the second has
  // nothing in memory, so its hit can only come from the Cache API write the first made in
  // `waitUntil` after answering.
  const cachePersist = mkdtempSync(join(tmpdir(), 'edgerec-cache-'));
  const bindings = { SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: '' };
  const path = `http://localhost/v1/recommendations?k=4&${ctx}`;
  const first = workerMiniflare(bindings, { cachePersist });
  let ranked;
  try {
    await copyDirToKv(kvDir, await first.getKVNamespace('MODELS'));
    const r = await first.dispatchFetch(path);
    assert.equal(r.headers.get('x-edgerec-cache'), 'miss');
    ranked = (await r.json()).items;
    const again = await first.dispatchFetch(path);
    assert.equal(again.headers.get('x-edgerec-cache'), 'hit', 'the isolate keeps its own copy');
    await again.arrayBuffer();
    // The write is not awaited by the answer; give it time to land before workerd stops.
    await new Promise((ok) => setTimeout(ok, 500));
  } finally {
    await first.dispose();
  }
  const second = workerMiniflare(bindings, { cachePersist });
  try {
    await copyDirToKv(kvDir, await second.getKVNamespace('MODELS'));
    // The request that loads the model ranks without reading the cache (it has waited for KV
    // already); load it first.
    const cold = await second.dispatchFetch('http://localhost/v1/health');
    assert.equal((await cold.json()).model.version, readFileSync(join(kvDir, 'models/current'), 'utf8'));
    const r = await second.dispatchFetch(path);
    assert.equal(r.headers.get('x-edgerec-cache'), 'hit');
    assert.deepEqual((await r.json()).items, ranked);
  } finally {
    await second.dispose();
  }
});

test('a corrupt or partial new model leaves the previous one serving', async () => {
  const good = readFileSync(join(kvDir, 'models/current'), 'utf8');
  publish(join(tmp, 'm2'));
  const next = readFileSync(join(kvDir, 'models/current'), 'utf8');
  assert.notEqual(next, good);
  await syncKv();
  const shardKey = `models/${next}/shard-0.bin`;
  const bytes = new Uint8Array(readFileSync(join(kvDir, shardKey)));
  bytes[bytes.length >> 1] ^= 0xff;
  await kv.put(shardKey, bytes);
  let h = await (await get('/v1/health')).json();
  assert.equal(h.status, 'degraded');
  assert.equal(h.model.version, good);
  assert.equal(h.last_error.code, 'corrupt_shard');
  assert.ok(h.wasm_memory_bytes > 0 && h.wasm_memory_bytes % 65536 === 0, String(h.wasm_memory_bytes));
  // L7: the public health says what failed, never the internals (keys, the validator's text).
  assert.doesNotMatch(JSON.stringify(h), /models\/|checksum|shard-0/);
  assert.equal((await (await get(`/v1/recommendations?${ctx}`)).json()).model, good);

  await kv.delete(shardKey); // partial publish: the pointer names a version whose shard is missing
  await waitForRetry(h);
  h = await (await get('/v1/health')).json();
  assert.equal(h.model.version, good);
  assert.equal(h.last_error.code, 'partial_publish');
  assert.match(h.last_error.message, /missing files/);

  // Once the shard is complete, the cron trigger picks the new model up.
  await kv.put(shardKey, new Uint8Array(readFileSync(join(kvDir, shardKey))));
  const worker = await mf.getWorker();
  await worker.scheduled({ cron: '*/5 * * * *' });
  h = await (await get('/v1/health')).json();
  assert.equal(h.status, 'ok');
  assert.equal(h.model.version, next);
});

test('events are forwarded to the ingest endpoint; a dead ingest never fails the visitor', async () => {
  const { received, url, close } = await fakeIngest(() => 200);
  const make = (url) => workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: url, INGEST_TOKEN: 'ingest-secret' });
  const live = make(url);
  const dead = make('http://127.0.0.1:9/v1/events'); // nothing listens on port 9
  try {
    for (const m of [live, dead]) await copyDirToKv(kvDir, await m.getKVNamespace('MODELS'));
    const body = JSON.stringify([{ item: '50', type: 'like', ts: 893286600, id: 'evt-1' }, { item: '181' }]);
    const res = await live.dispatchFetch('http://localhost/v1/events', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(res.status, 200);
    for (let i = 0; i < 50 && received.length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(received.length, 1, 'one batch per request');
    const batch = received[0];
    assert.equal(batch.auth, 'Bearer ingest-secret');
    assert.equal(batch.type, 'application/json');
    assert.equal(batch.path, '/v1/events');
    assert.equal(batch.body.length, 2);
    assert.match(batch.body[0].user, /^v[0-9a-f]{16}$/);
    // The client's id travels scoped to the visitor (M1: nobody can pre-claim another's ids).
    assert.deepEqual({ id: batch.body[0].id, item: batch.body[0].item, type: batch.body[0].type, ts: batch.body[0].ts }, { id: `${batch.body[0].user}:evt-1`, item: '50', type: 'like', ts: 893286600 });
    assert.equal(batch.body[1].user, batch.body[0].user, 'one visitor id per session');
    assert.ok(batch.body[1].id, 'events without an id get a stable one');

    const r = await dead.dispatchFetch('http://localhost/v1/events', { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).session_events, 2);
  } finally {
    await live.dispose();
    await dead.dispose();
    close();
  }
});

test('requests whose cf lacks a timezone or carries bad coordinates never crash the worker (H2)', async () => {
  for (const cf of [{ country: 'US' }, { timezone: 'Not/AZone', latitude: 'north', longitude: '1' }, { latitude: '37.7749', longitude: '-122.4194' }]) {
    const r = await mf.dispatchFetch('http://localhost/v1/recommendations?k=3', { cf });
    assert.equal(r.status, 200, JSON.stringify(cf));
    assert.ok(Array.isArray((await r.json()).items), JSON.stringify(cf));
  }
  assert.equal((await get('/v1/health')).status, 200, 'the isolate still serves');
});

test('the visitor\'s cf timezone sets the offset, the same for repeated and interleaved zones', async () => {
  // The worker computes a zone's offset once per quarter hour and reuses it: every answer must
  // still carry the offset Intl gives for the zone now, whichever zones came before it.
  const offset = (zone) => {
    const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      .formatToParts(new Date()).map((p) => [p.type, Number(p.value)]));
    const local = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute);
    return Math.round((local - Math.floor(Date.now() / 60_000) * 60_000) / 60_000);
  };
  const zones = ['Asia/Kolkata', 'America/New_York', 'Asia/Kathmandu', 'Asia/Kolkata', 'Not/AZone', 'America/New_York', 'Australia/Eucla'];
  for (const timezone of zones) {
    const r = await mf.dispatchFetch('http://localhost/v1/recommendations?k=3', { cf: { timezone } });
    assert.equal(r.status, 200, timezone);
    const want = timezone === 'Not/AZone' ? 0 : offset(timezone);
    assert.equal((await r.json()).context.tz_offset_min, want, timezone);
  }
});

test('an oversized event body is refused before it is read (H1)', async () => {
  // A chunked body of up to 256 MiB, written only as fast as the worker reads it: the worker must
  // stop reading once it passes the 64 KiB limit instead of buffering it all into the isolate.
  // It answers 413 at once; whether the client sees that answer or a reset of its unfinished
  // upload depends on the HTTP stack in between, so the test counts what was sent before either.
  const url = new URL('/v1/events', await mf.ready);
  const chunk = Buffer.alloc(16 * 1024, 32);
  let sent = 0;
  const outcome = await new Promise((resolve) => {
    let done = false;
    const finish = (v) => { if (!done) { done = true; resolve(v); } };
    const req = http.request(url, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
      res.resume();
      finish(res.statusCode);
      req.destroy();
    });
    req.on('error', (e) => finish(e.code));
    const write = () => {
      while (!done && sent < 16 * 1024) {
        sent++;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      if (!done) req.end();
    };
    write();
  });
  assert.ok([413, 'ECONNRESET', 'EPIPE'].includes(outcome), `outcome ${outcome}`);
  assert.ok(sent < 2048, `${sent} chunks of 16 KiB went out before the worker refused the body`);
  // A declared length above the limit is refused from the header alone, with the JSON error.
  const big = await post('/v1/events', new Uint8Array(70 * 1024).fill(32));
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, 'too_large');
  assert.equal((await (await get('/v1/health')).json()).status, 'ok', 'the model is still loaded');
});

test('central-sync recommend and the worker rank alike for requests with geohash, device and timezone', async () => {
  // ML-100k with context: each user gets a device, a city's geohash and its timezone, so the
  // model learns device and geo context tables and both sides must map a request to the same rows.
  const cities = [['9q8yy', -480], ['u4pru', 60], ['dr5ru', -300]];
  const devices = ['mobile', 'desktop', 'tablet'];
  const lines = readFileSync(join(root, 'data/ml-100k/events.csv'), 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const col = (name) => header.indexOf(name);
  const rows = lines.slice(1).map((line) => {
    const f = line.split(',');
    const u = Number(f[col('user')]);
    const [geohash, tz] = cities[u % 3];
    return [f[col('user')], f[col('item')], f[col('ts')], geohash, devices[(u >> 2) % 3], tz].join(',');
  });
  const csv = join(tmp, 'context-events.csv');
  writeFileSync(csv, ['user,item,ts,geohash,device,tz_offset_min', ...rows].join('\n') + '\n');
  const model = join(tmp, 'm-context');
  execFileSync(cs, ['--log', 'warn', 'train', '--events', csv, '--out', model, '--epochs', '2', '--dim', '16', '--no-tune', '--encoder-epochs', '1']);
  const manifest = JSON.parse(readFileSync(join(model, 'manifest.json'), 'utf8'));
  // The model carries a session encoder (format 8, section kind 46 in shard 0), so the equal
  // scores below hold the worker's encoder arithmetic to the native build's, bit for bit.
  assert.ok(sectionKinds(readFileSync(join(model, manifest.shards[0].file))).includes(46));
  const dir = join(tmp, 'kv-context');
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', model, '--to', `dir:${dir}`]);
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: '' });
  try {
    await copyDirToKv(dir, await edge.getKVNamespace('MODELS'));
    const t = 893286638;
    const clicked = ['50', '181', '100'];
    const posted = await edge.dispatchFetch('http://localhost/v1/events', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(clicked.map((item, i) => ({ item, type: 'view', ts: t - (clicked.length - 1 - i) }))),
    });
    assert.equal(posted.status, 200);
    const token = (await posted.json()).session;
    for (const [geohash, tz] of cities) {
      for (const device of devices) {
        const r = await edge.dispatchFetch(`http://localhost/v1/recommendations?k=10&geohash=${geohash}&device=${device}&ts=${t}&tz_offset_min=${tz}`, { headers: { 'X-Edgerec-Session': token } });
        const body = await r.json();
        assert.equal(body.model, manifest.version);
        const sessions = join(tmp, 'context-sessions.jsonl');
        writeFileSync(sessions, JSON.stringify({ id: 'x', items: clicked, ts: t, context: { geohash, device, tz_offset_min: tz } }) + '\n');
        const central = JSON.parse(execFileSync(cs, ['--log', 'warn', 'recommend', '--model', model, '--sessions', sessions, '--k', '10'], { encoding: 'utf8' }));
        assert.deepEqual(body.items.map((x) => x.id), central.items, `${geohash} ${device}`);
        assert.deepEqual(body.items.map((x) => x.score), central.scores, `${geohash} ${device}`);
      }
    }
  } finally {
    await edge.dispose();
  }
});

test('one model load in flight per isolate, and a backoff after a failure (H3)', async () => {
  // A fresh isolate whose model is corrupt, hit by many requests at once: one load starts, the
  // others are answered (fallback list) without starting their own, and after the failure no
  // request starts another load until the backoff has passed.
  const dir = join(tmp, 'kv-h3');
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', join(tmp, 'm1'), '--to', `dir:${dir}`]);
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: '' });
  try {
    const store = await edge.getKVNamespace('MODELS');
    await copyDirToKv(dir, store);
    const version = readFileSync(join(dir, 'models/current'), 'utf8');
    const shardKey = `models/${version}/shard-0.bin`;
    const bytes = new Uint8Array(readFileSync(join(dir, shardKey)));
    bytes[bytes.length >> 1] ^= 0xff;
    await store.put(shardKey, bytes);
    const answers = await Promise.all(Array.from({ length: 12 }, () => edge.dispatchFetch('http://localhost/v1/recommendations?k=3')));
    assert.ok(answers.every((r) => r.status === 200));
    let h = await (await edge.dispatchFetch('http://localhost/v1/health')).json();
    assert.equal(h.loads.started, 1, JSON.stringify(h.loads));
    assert.equal(h.loads.consecutive_failures, 1);
    assert.ok(h.loads.retry_in_ms > 0 && h.loads.retry_in_ms <= 1000, JSON.stringify(h.loads));
    assert.equal(h.last_error.code, 'corrupt_shard');
    // Repaired: after the backoff the next request loads it.
    await store.put(shardKey, new Uint8Array(readFileSync(join(dir, shardKey))));
    await waitForRetry(h);
    h = await (await edge.dispatchFetch('http://localhost/v1/health')).json();
    assert.equal(h.status, 'ok');
    assert.equal(h.loads.started, 2);
    assert.equal(h.loads.consecutive_failures, 0);
  } finally {
    await edge.dispose();
  }
});

test('any isolate serves any published version\'s shards by their immutable keys (M6)', async () => {
  // A fresh isolate (no request has loaded a model yet) serves shard URLs straight from KV, and
  // a version that is no longer current still serves its own bytes, so a page that read one
  // manifest never mixes it with another version's shards.
  const dir = join(tmp, 'kv-m6');
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', join(tmp, 'm1'), '--to', `dir:${dir}`]);
  const first = readFileSync(join(dir, 'models/current'), 'utf8');
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', join(tmp, 'm2'), '--to', `dir:${dir}`]);
  const second = readFileSync(join(dir, 'models/current'), 'utf8');
  assert.notEqual(first, second);
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: '' });
  try {
    await copyDirToKv(dir, await edge.getKVNamespace('MODELS'));
    for (const version of [second, first, second]) {
      const r = await edge.dispatchFetch(`http://localhost/v1/model/${version}/shard-0.bin`);
      assert.equal(r.status, 200, version);
      assert.match(r.headers.get('cache-control'), /immutable/);
      assert.deepEqual(new Uint8Array(await r.arrayBuffer()), new Uint8Array(readFileSync(join(dir, `models/${version}/shard-0.bin`))), version);
    }
    for (const path of [`/v1/model/${second}/shard-9.bin`, '/v1/model/v0-nope/shard-0.bin', '/v1/model/../shard-0.bin']) {
      const r = await edge.dispatchFetch(`http://localhost${path}`);
      assert.equal(r.status, 404, path);
      assert.equal((await r.json()).error.code, 'not_found', path);
    }
  } finally {
    await edge.dispose();
  }
});

test('another site cannot post events into a visitor\'s session (M2)', async () => {
  const body = JSON.stringify({ item: '50', type: 'click' });
  // An HTML form from another site can only send text/plain (no CORS preflight).
  const form = await mf.dispatchFetch('http://localhost/v1/events', { method: 'POST', body, headers: { 'Content-Type': 'text/plain' } });
  assert.equal(form.status, 415);
  assert.equal((await form.json()).error.code, 'unsupported_media_type');
  // A browser's cross-site request says so (Sec-Fetch-Site) or shows a foreign Origin.
  for (const headers of [{ 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' }, { Origin: 'https://evil.example' }]) {
    const r = await post('/v1/events', body, headers);
    assert.equal(r.status, 403, JSON.stringify(headers));
    assert.equal((await r.json()).error.code, 'cross_site');
  }
  // The visitor's own page (same origin) and servers without browser headers still post.
  assert.equal((await post('/v1/events', body, { 'Sec-Fetch-Site': 'same-origin', Origin: 'http://localhost' })).status, 200);
  assert.equal((await post('/v1/events', body)).status, 200);
  // A partner listed in ALLOWED_ORIGINS may post cross-site.
  const partner = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: '', ALLOWED_ORIGINS: 'https://blog.example' });
  try {
    await copyDirToKv(kvDir, await partner.getKVNamespace('MODELS'));
    const r = await partner.dispatchFetch('http://localhost/v1/events', { method: 'POST', body, headers: { 'Content-Type': 'application/json', 'Sec-Fetch-Site': 'cross-site', Origin: 'https://blog.example' } });
    assert.equal(r.status, 200);
  } finally {
    await partner.dispose();
  }
});

test('cached session-less lists answer with each request\'s own context and trend window (L1)', async () => {
  const base = 'k=6&device=tv&geohash=u4pru&tz_offset_min=0';
  const t = 893286638;
  const a = await (await get(`/v1/recommendations?${base}&ts=${t}`)).json();
  const r = await get(`/v1/recommendations?${base}&ts=${t + 60}`);
  assert.equal(r.headers.get('x-edgerec-cache'), 'hit');
  const b = await r.json();
  assert.deepEqual(b.items, a.items);
  assert.equal(b.context.ts, t + 60, 'the second visitor gets its own time, not the first one\'s');
  // A week earlier: the same time-of-week bin but another trend window, so another entry.
  const c = await get(`/v1/recommendations?${base}&ts=${t - 7 * 86400}`);
  assert.equal(c.headers.get('x-edgerec-cache'), 'miss');
});

test('a busy ingest (503) is retried with the same event ids (M3)', async () => {
  const { received, url, close } = await fakeIngest((n) => (n <= 2 ? 503 : 200));
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: url, INGEST_TOKEN: 'ingest-secret' });
  try {
    await copyDirToKv(kvDir, await edge.getKVNamespace('MODELS'));
    const r = await edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify([{ item: '50' }, { item: '181', type: 'like' }]), headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200, 'the visitor never waits for the ingest');
    for (let i = 0; i < 100 && received.length < 3; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(received.length, 3, 'two 503s, then delivered');
    const ids = received.map((r) => r.body.map((e) => e.id).join(','));
    assert.ok(ids.every((x) => x === ids[0] && x.split(',').every(Boolean)), 'every attempt carries the same ids');
  } finally {
    await edge.dispose();
    close();
  }
});

test('a batch the ingest does not take goes to the KV spool; the cron delivers it later (no accepted event lost)', async () => {
  let up = false;
  const { received, url, close } = await fakeIngest(() => (up ? 200 : 503));
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: url, INGEST_TOKEN: 'ingest-secret' });
  try {
    const store = await edge.getKVNamespace('MODELS');
    await copyDirToKv(kvDir, store);
    const r = await edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify([{ item: '50', id: 'a' }, { item: '181', id: 'b' }]), headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200);
    const spooled = async () => (await store.list({ prefix: 'spool/' })).keys;
    for (let i = 0; i < 150 && (await spooled()).length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(received.length, 4, 'every attempt failed');
    assert.equal((await spooled()).length, 1, 'the batch waits in the spool');
    const worker = await edge.getWorker();
    await worker.scheduled({ cron: '*/5 * * * *' }); // the ingest is still down: it stays
    assert.equal((await spooled()).length, 1);
    up = true;
    await worker.scheduled({ cron: '*/5 * * * *' });
    assert.equal((await spooled()).length, 0, 'delivered and removed');
    const posts = received.filter((x) => x.path === '/v1/events');
    const last = posts[posts.length - 1];
    assert.deepEqual(last.body.map((e) => e.id), received[0].body.map((e) => e.id), 'the same ids: a re-delivery is stored once');
    assert.equal(last.auth, 'Bearer ingest-secret');
  } finally {
    await edge.dispose();
    close();
  }
});

test('event ids are scoped per visitor, floods are limited, bots are marked (M1)', async () => {
  const { received, url, close } = await fakeIngest(() => 200);
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: url, INGEST_TOKEN: 'ingest-secret', EVENTS_PER_MINUTE_PER_SESSION: '3', EVENTS_PER_MINUTE_PER_IP: '5' });
  const send = (body, headers = {}) => edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', ...headers } });
  const waitFor = async (n) => { for (let i = 0; i < 50 && received.length < n; i++) await new Promise((ok) => setTimeout(ok, 100)); };
  try {
    await copyDirToKv(kvDir, await edge.getKVNamespace('MODELS'));
    // The limits count per clock minute: start early in one, so the checks below share it.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((ok) => setTimeout(ok, 60_000 - intoMinute + 200));
    // Two visitors send the same client id: both events reach the log under distinct ids.
    // Bodies are read at once: an unread Miniflare response body can be gone after later awaits.
    const a = await send({ item: '50', id: 'same' }, { 'CF-Connecting-IP': '198.51.100.1' });
    const aBody = await a.json();
    const b = await send({ item: '50', id: 'same' }, { 'CF-Connecting-IP': '198.51.100.2' });
    await b.arrayBuffer();
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    await waitFor(2);
    const ids = received.map((r) => r.body[0].id);
    assert.notEqual(ids[0], ids[1]);
    assert.ok(ids.every((id) => id.endsWith(':same')), ids.join(' '));
    // One session: 3 events a minute, the 4th is refused with a JSON 429.
    const token = aBody.session;
    const again = await send([{ item: '181' }, { item: '100' }], { 'X-Edgerec-Session': token, 'CF-Connecting-IP': '198.51.100.1' });
    assert.equal(again.status, 200);
    const flood = await send({ item: '1' }, { 'X-Edgerec-Session': token, 'CF-Connecting-IP': '198.51.100.1' });
    assert.equal(flood.status, 429);
    assert.equal((await flood.json()).error.code, 'rate_limited');
    // Fresh sessions from the same /24: 5 events a minute in all, and 4 were accepted above.
    const fresh = [];
    for (let i = 0; i < 3; i++) fresh.push((await send({ item: '7' }, { 'CF-Connecting-IP': `198.51.100.${10 + i}` })).status);
    assert.deepEqual(fresh, [200, 429, 429]);
    // Another address block is not affected.
    assert.equal((await send({ item: '7' }, { 'CF-Connecting-IP': '203.0.113.5' })).status, 200);
    // A crawler's events are forwarded marked as bot traffic (kept out of training centrally).
    assert.equal((await send({ item: '99' }, { 'User-Agent': 'Googlebot/2.1 (+http://www.google.com/bot.html)', 'CF-Connecting-IP': '192.0.2.9' })).status, 200);
    const crawled = () => received.find((r) => r.body[0].item === '99');
    for (let i = 0; i < 50 && !crawled(); i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(crawled()?.body[0].device, 'bot');
    assert.equal(received.filter((r) => r.body[0].device === 'bot').length, 1, 'only the crawler is marked');
  } finally {
    await edge.dispose();
    close();
  }
});

/** A real `central-sync serve` on 127.0.0.1 with its own SQLite log; killed by `stop`. */
async function realIngest(db) {
  const { spawn } = await import('node:child_process');
  const child = spawn(cs, ['--log', 'warn', '--db', db, 'serve', '--addr', '127.0.0.1:0'], { env: { ...process.env, EDGEREC_INGEST_TOKEN: 'ingest-secret' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((ok, fail) => {
    child.stdout.once('data', (d) => ok(d.toString().trim().replace('listening on ', '')));
    child.once('exit', (code) => fail(new Error(`serve exited with ${code}`)));
  });
  return { base, stop: () => child.kill() };
}

test('each list served is logged as an exposure; a click naming it comes back as its reward (issue 15)', async () => {
  const db = join(tmp, 'exposures.db');
  const ingest = await realIngest(db);
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: `${ingest.base}/v1/events`, INGEST_TOKEN: 'ingest-secret', EXPOSURE_BATCH: '1' });
  try {
    await copyDirToKv(kvDir, await edge.getKVNamespace('MODELS'));
    const version = readFileSync(join(kvDir, 'models/current'), 'utf8');
    const list = await (await edge.dispatchFetch(`http://localhost/v1/recommendations?k=5&${ctx}`)).json();
    assert.match(list.exposure, /^x[0-9a-f]{32}$/);
    assert.equal(list.items.length, 5);
    const clicked = list.items[2].id;
    const r = await edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify({ item: clicked, type: 'click', exposure: list.exposure }), headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    // Both reach the real log (after the responses, by waitUntil); the export joins them.
    const csv = join(tmp, 'exposures.csv');
    let rows = [];
    for (let i = 0; i < 50; i++) {
      execFileSync(cs, ['--log', 'warn', '--db', db, 'exposures', '--out', csv]);
      rows = readFileSync(csv, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
      if (rows.length === 5 && rows.some((row) => row[5] === '1.0')) break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.equal(rows.length, 5, 'one row per item shown');
    // ts,user,session,item,position,reward,propensity,model,arm,exposure
    assert.deepEqual(rows.map((row) => row[3]), list.items.map((it) => it.id));
    assert.deepEqual(rows.map((row) => row[4]), ['0', '1', '2', '3', '4']);
    assert.deepEqual(rows.map((row) => row[5]), ['0.0', '0.0', '1.0', '0.0', '0.0'], 'the clicked item earns the reward');
    assert.ok(rows.every((row) => row[6] === '1.0' && row[7] === version && row[9] === list.exposure));
    assert.match(rows[0][1], /^v[0-9a-f]{16}$/);
    // The log feeds off-policy evaluation of the model that served it.
    const ope = execFileSync(cs, ['--log', 'warn', 'ope', '--exposures', csv, '--policy', 'model', '--model', join(tmp, 'm1'), '--resamples', '50'], { encoding: 'utf8' });
    assert.match(ope, /IPS/);

    // A list ranked in the browser by the npm package and shown there: the page posts its
    // exposure to the edge, which logs it for the visitor its session names; a click names it.
    initSync({ module: readFileSync(join(root, 'pkg/edgerec_bg.wasm')) });
    const manifest = await (await edge.dispatchFetch('http://localhost/v1/model')).json();
    const shards = await Promise.all(manifest.shards.map(async (_, i) => new Uint8Array(await (await edge.dispatchFetch(`http://localhost/v1/model/${manifest.version}/shard-${i}.bin`)).arrayBuffer())));
    const engine = Engine.fromShards(shards);
    const session = new Session();
    session.observe(clicked, 'click', 893286600);
    const local = engine.recommend(session, { k: 4, explore: { epsilon: 0.5, seed: 3 } });
    const record = engine.exposure(local, manifest.version);
    const started = await edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify({ item: clicked, type: 'view' }), headers: { 'Content-Type': 'application/json' } });
    const visitor = (await started.json()).session;
    const postExposure = (body, session = visitor) => edge.dispatchFetch('http://localhost/v1/exposures', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', 'X-Edgerec-Session': session } });
    const answer = await postExposure(record);
    assert.equal(answer.status, 200);
    const { exposures: [stored], logged } = await answer.json();
    assert.equal(logged, true);
    assert.match(stored, new RegExp(`^v[0-9a-f]{16}:${record.id}$`), 'the id is scoped to the visitor');
    const bad = await postExposure({ ...record, model: 'v0-not-served' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, 'unknown_model');
    const cross = await edge.dispatchFetch('http://localhost/v1/exposures', { method: 'POST', body: JSON.stringify(record), headers: { 'Content-Type': 'application/json', 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' } });
    assert.equal(cross.status, 403);
    await cross.arrayBuffer();
    const second = local[1].id;
    await (await edge.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify({ item: second, type: 'click', exposure: stored }), headers: { 'Content-Type': 'application/json', 'X-Edgerec-Session': visitor } })).arrayBuffer();
    let browserRows = [];
    for (let i = 0; i < 50; i++) {
      execFileSync(cs, ['--log', 'warn', '--db', db, 'exposures', '--out', csv]);
      browserRows = readFileSync(csv, 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')).filter((row) => row[9] === stored);
      if (browserRows.some((row) => row[5] === '1.0')) break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.deepEqual(browserRows.map((row) => row[3]), local.map((x) => x.id));
    assert.deepEqual(browserRows.map((row) => Number(row[6])), local.map((x) => x.propensity), 'the browser\'s propensities are kept');
    assert.deepEqual(browserRows.map((row) => row[5]), ['0.0', '1.0', '0.0', '0.0'], 'the click names the browser list');

    // EXPOSURES=off: no log, no id in the answer.
    const quiet = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: `${ingest.base}/v1/events`, INGEST_TOKEN: 'ingest-secret', EXPOSURES: 'off' });
    try {
      await copyDirToKv(kvDir, await quiet.getKVNamespace('MODELS'));
      const body = await (await quiet.dispatchFetch(`http://localhost/v1/recommendations?k=5&${ctx}`)).json();
      assert.equal(body.fallback, false);
      assert.equal(body.exposure, null);
    } finally {
      await quiet.dispose();
    }
  } finally {
    await edge.dispose();
    ingest.stop();
  }
});

test('exposures are sent in batches per isolate, to the sibling /v1/exposures, spooled when the ingest is down', async () => {
  let up = true;
  const { received, url, close } = await fakeIngest(() => (up ? 200 : 503));
  const edge = workerMiniflare({ SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: url, INGEST_TOKEN: 'ingest-secret', EXPOSURE_BATCH: '3', EXPOSURE_FLUSH_SECONDS: '600' });
  const list = async () => (await (await edge.dispatchFetch(`http://localhost/v1/recommendations?k=4&${ctx}`)).json()).exposure;
  const settle = () => new Promise((ok) => setTimeout(ok, 300));
  try {
    const store = await edge.getKVNamespace('MODELS');
    await copyDirToKv(kvDir, store);
    const ids = [await list(), await list()];
    await settle();
    assert.equal(received.length, 0, 'two lists wait in the isolate');
    ids.push(await list());
    for (let i = 0; i < 50 && received.length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(received.length, 1, 'the third list sends the batch');
    assert.equal(received[0].path, '/v1/exposures');
    assert.equal(received[0].auth, 'Bearer ingest-secret');
    assert.deepEqual(received[0].body.map((x) => x.id), ids);
    assert.ok(received[0].body.every((x) => x.items.length === 4 && x.items.every((it, i) => it.position === i && it.propensity === 1)));
    // Down: the batch goes to its own spool after the retries; the cron delivers it.
    up = false;
    for (let i = 0; i < 3; i++) await list();
    const spooled = async () => (await store.list({ prefix: 'spool-exposures/' })).keys;
    for (let i = 0; i < 150 && (await spooled()).length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal((await spooled()).length, 1);
    assert.equal((await store.list({ prefix: 'spool/' })).keys.length, 0, 'the event spool is separate');
    up = true;
    await (await edge.getWorker()).scheduled({ cron: '*/5 * * * *' });
    assert.equal((await spooled()).length, 0, 'delivered and removed');
    // (The cron also sends the isolate's request metrics, to /v1/edge-metrics.)
    const lists = received.filter((r) => r.path === '/v1/exposures');
    const last = lists[lists.length - 1];
    assert.equal(last.body.length, 3);
    assert.ok(received.some((r) => r.path === '/v1/edge-metrics' && r.auth === 'Bearer ingest-secret'));
  } finally {
    await edge.dispose();
    close();
  }
});

test('every answer is counted by route, status, model, cache state and error, and the counts reach central-sync\'s /metrics (issue 15)', async () => {
  const ingest = await realIngest(join(tmp, 'edge-metrics.db'));
  try {
    await edgeMetricsReachCentral(ingest);
  } finally {
    ingest.stop();
  }
});

async function edgeMetricsReachCentral(ingest) {
  const scrape = async () => (await (await fetch(`${ingest.base}/metrics`)).text());
  const value = (text, series) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const waitFor = async (check) => {
    for (let i = 0; i < 100; i++) {
      const text = await scrape();
      if (check(text)) return text;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    return scrape();
  };
  const bindings = { SESSION_KEY: 'test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '0', INGEST_URL: `${ingest.base}/v1/events`, INGEST_TOKEN: 'ingest-secret', EXPOSURES: 'off', REQUEST_LOG: 'json' };
  // A report per request, and the Analytics Engine binding present (Miniflare's local dataset
  // accepts and drops data points: writing one must not disturb the answer).
  const edge = workerMiniflare({ ...bindings, EDGE_METRICS_FLUSH_SECONDS: '0' }, { analyticsEngineDatasets: { EDGE_ANALYTICS: { dataset: 'edgerec_requests' } } });
  try {
    await copyDirToKv(kvDir, await edge.getKVNamespace('MODELS'));
    const version = readFileSync(join(kvDir, 'models/current'), 'utf8');
    const call = async (path, init) => { const r = await edge.dispatchFetch(`http://localhost${path}`, init); await r.arrayBuffer(); return r; };
    const first = await call(`/v1/recommendations?k=5&${ctx}`);
    assert.equal(first.headers.get('X-Edgerec-Model'), version);
    assert.equal((await call(`/v1/recommendations?k=5&${ctx}`)).headers.get('X-Edgerec-Cache'), 'hit');
    assert.equal((await call('/v1/health')).status, 200);
    assert.equal((await call('/nope')).status, 404);
    assert.equal((await call('/v1/events', { method: 'POST', body: JSON.stringify({ item: 'no-such-film', type: 'click' }), headers: { 'Content-Type': 'application/json' } })).status, 400);
    const series = (route, status, model, cache, error) =>
      `edgerec_edge_requests_total{route="${route}",status="${status}",model="${model}",cache="${cache}",error="${error}"}`;
    const text = await waitFor((t) => value(t, 'edgerec_edge_reports_total') >= 5);
    assert.equal(value(text, 'edgerec_edge_reports_total'), 5, text);
    assert.equal(value(text, series('recommendations', 200, version, 'miss', '')), 1, text);
    assert.equal(value(text, series('recommendations', 200, version, 'hit', '')), 1, text);
    assert.equal(value(text, series('health', 200, 'none', 'none', '')), 1, text);
    assert.equal(value(text, series('other', 404, 'none', 'none', 'not_found')), 1, text);
    assert.equal(value(text, series('events', 400, 'none', 'none', 'unknown_item')), 1, text);
    assert.equal(value(text, 'edgerec_edge_request_duration_seconds_count{route="recommendations"}'), 2, text);
    assert.equal(value(text, 'edgerec_edge_request_duration_seconds_bucket{route="recommendations",le="+Inf"}'), 2, text);
    assert.equal(value(text, 'edgerec_edge_reports_rejected_total'), 0);
  } finally {
    await edge.dispose();
  }
  // The default: counts wait in the isolate for the flush interval; the cron sends them.
  const batching = workerMiniflare({ ...bindings, REQUEST_LOG: '', EDGE_METRICS_FLUSH_SECONDS: '600' });
  try {
    await copyDirToKv(kvDir, await batching.getKVNamespace('MODELS'));
    for (let i = 0; i < 3; i++) await (await batching.dispatchFetch('http://localhost/v1/health')).arrayBuffer();
    await new Promise((ok) => setTimeout(ok, 300));
    assert.equal(value(await scrape(), 'edgerec_edge_reports_total'), 5, 'nothing sent before the interval');
    await (await batching.getWorker()).scheduled({ cron: '*/5 * * * *' });
    const text = await waitFor((t) => value(t, 'edgerec_edge_reports_total') >= 6);
    assert.equal(value(text, 'edgerec_edge_reports_total'), 6, 'one report for the three requests');
    assert.equal(value(text, 'edgerec_edge_requests_total{route="health",status="200",model="none",cache="none",error=""}'), 4, text);
  } finally {
    await batching.dispose();
  }
}
