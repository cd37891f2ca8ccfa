// The built worker under `workerd serve` run directly (tests/support/workerd.mjs), the setup
// scripts/bench-workerd.mjs measures: no Miniflare, KV read from a published directory, no Cache
// API. Checks that this setup serves what the Miniflare suite serves, so the bench measures a
// worker that works.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { directWorkerd } from '../support/workerd.mjs';
import { publishRandomModel } from '../support/npy.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'edgerec-direct-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const QUERY = '/v1/recommendations?k=10&device=mobile&geohash=9q8yy';

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
    let answer;
    for (let tries = 0; tries < 500; tries++) {
      answer = await (await fetch(w.base + QUERY)).json();
      if (answer.model && !answer.fallback) break;
      await new Promise((ok) => setTimeout(ok, 10));
    }
    assert.equal(answer.fallback, false, 'the published model never loaded');
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
