// The built worker under `workerd serve` run directly (tests/support/workerd.mjs), the setup
// scripts/bench-workerd.mjs measures: no Miniflare, KV read from a published directory, no Cache
// API. Checks that this setup serves what the Miniflare suite serves, so the bench measures a
// worker that works.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { directWorkerd } from '../support/workerd.mjs';
import { publishRandomModel } from '../support/npy.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'edgerec-direct-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const QUERY = '/v1/recommendations?k=10&device=mobile&geohash=9q8yy';

/** The first answer ranked by the model (a fresh isolate answers from the fallback list while it loads). */
async function firstRankedAnswer(base) {
  for (let tries = 0; tries < 500; tries++) {
    const answer = await (await fetch(base + QUERY)).json();
    if (answer.model && !answer.fallback) return answer;
    await new Promise((ok) => setTimeout(ok, 10));
  }
  throw new Error('the published model never loaded');
}

test('workerd run directly: fallback without a model, then a published model ranks sessions', async () => {
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  const bare = await directWorkerd(empty);
  try {
    const health = await (await fetch(`${bare.base}/v1/health`)).json();
    assert.equal(health.status, 'fallback');
    const list = await fetch(bare.base + QUERY);
    assert.equal(list.status, 200);
    assert.equal((await list.json()).fallback, true);
  } finally {
    await bare.stop();
  }

  const kvDir = publishRandomModel(tmp, 3000, 16, 5);
  const version = readFileSync(join(kvDir, 'models/current'), 'utf8').trim();
  const w = await directWorkerd(kvDir);
  try {
    const answer = await firstRankedAnswer(w.base);
    assert.equal(answer.model, version);
    assert.equal(answer.items.length, 10);

    const clicked = answer.items.slice(0, 3).map((r) => ({ item: r.id }));
    const post = await fetch(`${w.base}/v1/events`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(clicked),
    });
    assert.equal(post.status, 200);
    const token = (await post.json()).session;
    assert.ok(token);
    const ranked = await (await fetch(w.base + QUERY, { headers: { 'X-Edgerec-Session': token } })).json();
    assert.equal(ranked.items.length, 10);
    const seen = new Set(clicked.map((c) => c.item));
    assert.ok(ranked.items.every((r) => !seen.has(r.id)), 'clicked items are not recommended again');
    assert.notDeepEqual(ranked.items.map((r) => r.id), answer.items.map((r) => r.id));

    // No Cache API here: session-less lists are still answered, never a 5xx.
    for (let i = 0; i < 3; i++) assert.equal((await fetch(w.base + QUERY)).status, 200);
  } finally {
    await w.stop();
  }
});

test('a cold isolate reads the first shard while the manifest is on its way, by the manifest\'s name otherwise', async () => {
  mkdirSync(join(tmp, 'early'));
  const kvDir = publishRandomModel(join(tmp, 'early'), 2000, 16, 7);
  const version = readFileSync(join(kvDir, 'models/current'), 'utf8').trim();
  const manifestKey = `models/${version}/manifest.json`;
  const firstShard = `models/${version}/shard-0.bin`;
  const at = (reads, key, event) => reads.findIndex((r) => r.key === key && r.event === event);
  // Each KV read is held 100 ms, so reads the worker issues together are in flight together.
  const w = await directWorkerd(kvDir, { kvLatencyMs: 100 });
  try {
    assert.equal((await firstRankedAnswer(w.base)).model, version);
    const reads = await w.kvReads();
    assert.ok(at(reads, firstShard, 'start') >= 0, JSON.stringify(reads));
    assert.ok(at(reads, firstShard, 'start') < at(reads, manifestKey, 'end'), `the shard read waited for the manifest: ${JSON.stringify(reads)}`);
    assert.equal(reads.filter((r) => r.key === firstShard && r.event === 'start').length, 1, 'the early read is used, not repeated');
  } finally {
    await w.stop();
  }

  // A manifest may name its shards anything: the early read then finds nothing, and the shard is
  // read by the manifest's name.
  const renamed = join(tmp, 'renamed-kv');
  cpSync(kvDir, renamed, { recursive: true });
  renameSync(join(renamed, firstShard), join(renamed, `models/${version}/part-a.bin`));
  const manifest = JSON.parse(readFileSync(join(renamed, manifestKey), 'utf8'));
  assert.equal(manifest.shards.length, 1);
  manifest.shards[0].file = 'part-a.bin';
  writeFileSync(join(renamed, manifestKey), JSON.stringify(manifest));
  const r = await directWorkerd(renamed, { kvLatencyMs: 20 });
  try {
    assert.equal((await firstRankedAnswer(r.base)).model, version);
    const reads = await r.kvReads();
    assert.deepEqual(reads.filter((x) => x.key === firstShard && x.event === 'end').map((x) => x.found), [false]);
    const named = `models/${version}/part-a.bin`;
    assert.ok(at(reads, named, 'start') > at(reads, manifestKey, 'end'), JSON.stringify(reads));
    assert.equal(reads.find((x) => x.key === named && x.event === 'end').found, true);
  } finally {
    await r.stop();
  }
});

test('a paged model: the isolate loads its index, reads the pages each request needs, and ranks as the whole model', async () => {
  // The same random embeddings packed whole and paged (20,000 items: the first pass is on for
  // both, so both rank through it and give the same lists).
  mkdirSync(join(tmp, 'whole'));
  mkdirSync(join(tmp, 'paged'));
  const wholeKv = publishRandomModel(join(tmp, 'whole'), 20_000, 16, 11);
  const pagedKv = publishRandomModel(join(tmp, 'paged'), 20_000, 16, 11, { pageItems: 500 });
  const version = readFileSync(join(pagedKv, 'models/current'), 'utf8').trim();
  const manifest = JSON.parse(readFileSync(join(pagedKv, `models/${version}/manifest.json`), 'utf8'));
  assert.ok(manifest.pages.length >= 40, `${manifest.pages.length} pages`);
  const whole = await directWorkerd(wholeKv);
  // A page cache of about six pages, so that requests evict pages and read them again.
  const paged = await directWorkerd(pagedKv, { bindings: { PAGE_CACHE_BYTES: '100000' } });
  try {
    const first = await firstRankedAnswer(paged.base);
    assert.equal(first.model, version);
    const reference = await firstRankedAnswer(whole.base);
    assert.deepEqual(first.items.map((r) => r.id), reference.items.map((r) => r.id));
    // Sessions: the same clicks posted to each worker, then the lists compared.
    for (const clicks of [['sku-5'], ['sku-17', 'sku-4000', 'sku-19999'], ['sku-123', 'sku-124']]) {
      const lists = [];
      for (const w of [whole, paged]) {
        const post = await fetch(`${w.base}/v1/events`, {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(clicks.map((item) => ({ item }))),
        });
        assert.equal(post.status, 200);
        const token = (await post.json()).session;
        const r = await fetch(w.base + QUERY, { headers: { 'X-Edgerec-Session': token } });
        assert.equal(r.status, 200);
        lists.push((await r.json()).items.map((x) => x.id));
      }
      assert.equal(lists[1].length, 10);
      assert.deepEqual(lists[1], lists[0], `clicks ${clicks}`);
    }
    // Pages were read as requests asked (random embeddings spread a request's candidates over
    // most clusters), and the small cache evicted some that a later request read again.
    const reads = await paged.kvReads();
    const pageReads = reads.filter((r) => r.event === 'start' && /\/page-\d+\.bin$/.test(r.key)).map((r) => r.key);
    assert.ok(pageReads.length > new Set(pageReads).size, `${pageReads.length} page reads of ${new Set(pageReads).size} pages`);
    const health = await (await fetch(`${paged.base}/v1/health`)).json();
    assert.equal(health.status, 'ok');
    assert.equal(health.model.pages.count, manifest.pages.length);
    // Pages are served to browsers by their number, as shards are.
    const page3 = await fetch(`${paged.base}/v1/model/${version}/page-3.bin`);
    assert.equal(page3.status, 200);
    assert.equal((await page3.arrayBuffer()).byteLength, manifest.pages[3].bytes);
    assert.equal((await fetch(`${paged.base}/v1/model/${version}/page-${manifest.pages.length}.bin`)).status, 404);
    assert.ok(health.model.pages.loaded > 0 && health.model.pages.loaded_bytes <= 100000, JSON.stringify(health.model.pages));
  } finally {
    await whole.stop();
    await paged.stop();
  }
  // A request that needs more pages than MAX_PAGE_READS is refused by name, and the isolate
  // still serves (a cold one here: its first request reads most pages).
  const capped = await directWorkerd(pagedKv, { bindings: { MAX_PAGE_READS: '3' } });
  try {
    let answer;
    for (let tries = 0; tries < 500; tries++) {
      answer = await fetch(capped.base + QUERY);
      if (answer.status !== 200 || !(await answer.clone().json()).fallback) break;
      await new Promise((ok) => setTimeout(ok, 10));
    }
    assert.equal(answer.status, 503);
    assert.equal((await answer.json()).error.code, 'too_many_pages');
    assert.equal((await fetch(`${capped.base}/v1/health`)).status, 200);
  } finally {
    await capped.stop();
  }
});
