// Issue 15: an A/B split run through the real worker (workerd via Miniflare, local KV) against a
// real `central-sync serve` and its SQLite log. Two models share the traffic 50/50: one trained
// on MovieLens-100k, one of random vectors over the same films. Simulated visitors, each an
// ML-100k user, click three films of their history (the session), get a list, and click the
// first listed film they went on to rate, naming the list's exposure. `central-sync ab report`
// must find the arms balanced (sample-ratio check) and the trained model better.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../support/edge.mjs';
import { writeRandomNpy } from '../support/npy.mjs';

const root = new URL('../../', import.meta.url).pathname;
const cs = join(root, 'target/release/central-sync');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-ab-'));
const VISITORS = Number(process.env.AB_VISITORS ?? 2000);
const run = (...args) => execFileSync(cs, ['--log', 'warn', ...args], { encoding: 'utf8' });
let serve;
after(() => serve?.kill());

test(`A/B split of two models over ${VISITORS} simulated visitors: balanced arms, the better model found`, async () => {
  // The trained arm and the random arm, over the same 1,682 films.
  run('train', '--events', join(root, 'data/ml-100k/events.csv'), '--items', join(root, 'data/ml-100k/items.csv'),
    '--out', join(tmp, 'trained'), '--epochs', '3', '--dim', '16', '--no-tune', '--encoder-epochs', '1', '--alpha', '4', '--beta', '1');
  const ids = readFileSync(join(root, 'data/ml-100k/items.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',')[0]);
  writeRandomNpy(join(tmp, 'random.npy'), ids.length, 16, 5);
  writeFileSync(join(tmp, 'ids.txt'), ids.join('\n') + '\n');
  run('pack', '--embeddings', join(tmp, 'random.npy'), '--ids', join(tmp, 'ids.txt'), '--out', join(tmp, 'random'));
  const version = (dir) => JSON.parse(readFileSync(join(tmp, dir, 'manifest.json'), 'utf8')).version;
  const [good, bad] = [version('trained'), version('random')];
  const kvDir = `dir:${join(tmp, 'kv')}`;
  run('publish', '--model', join(tmp, 'trained'), '--to', kvDir);
  const published = run('publish', '--model', join(tmp, 'random'), '--to', kvDir, '--split', `${good}=50,${bad}=50`);
  assert.match(published, /published/);
  assert.equal(readFileSync(join(tmp, 'kv/models/current'), 'utf8'), `${good}=50,${bad}=50`);

  const db = join(tmp, 'events.db');
  serve = spawn(cs, ['--log', 'warn', '--db', db, 'serve', '--addr', '127.0.0.1:0'], { env: { ...process.env, EDGEREC_INGEST_TOKEN: 'ab-secret' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((ok) => serve.stdout.once('data', (d) => ok(d.toString().trim().replace('listening on ', ''))));
  const edge = workerMiniflare({
    SESSION_KEY: 'ab-test-session-key-0123456789', CHECK_INTERVAL_SECONDS: '600', INGEST_URL: `${base}/v1/events`, INGEST_TOKEN: 'ab-secret',
    EVENTS_PER_MINUTE_PER_IP: '1000000', EXPOSURE_BATCH: '20',
  });
  try {
    await copyDirToKv(join(tmp, 'kv'), await edge.getKVNamespace('MODELS'));
    const health = await (await edge.dispatchFetch('http://localhost/v1/health')).json();
    assert.deepEqual(health.arms.map((a) => [a.version, a.weight]), [[good, 50], [bad, 50]]);

    // Visitors: ML-100k users with at least 10 ratings, in time order; the session is three
    // films from the middle of their history, the films after it are what they would click.
    const byUser = new Map();
    for (const line of readFileSync(join(root, 'data/ml-100k/events.csv'), 'utf8').trim().split('\n').slice(1)) {
      const [user, item, ts] = line.split(',');
      if (!byUser.has(user)) byUser.set(user, []);
      byUser.get(user).push([Number(ts), item]);
    }
    const users = [...byUser.values()].filter((h) => h.length >= 10).map((h) => h.sort((a, b) => a[0] - b[0]).map((e) => e[1]));
    const post = (body, token) => edge.dispatchFetch('http://localhost/v1/events', {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', ...(token ? { 'X-Edgerec-Session': token } : {}) },
    });
    const arms = new Map();
    const visit = async (i) => {
      const history = users[i % users.length];
      const cut = Math.floor(history.length / 2);
      const session = history.slice(cut - 3, cut);
      const future = new Set(history.slice(cut));
      const started = await post(session.map((item) => ({ item, type: 'click' })));
      const { session: token } = await started.json();
      const list = await (await edge.dispatchFetch('http://localhost/v1/recommendations?k=10', { headers: { 'X-Edgerec-Session': token } })).json();
      arms.set(list.arm, (arms.get(list.arm) ?? 0) + 1);
      // Sticky: the same visitor gets the same arm.
      const again = await (await edge.dispatchFetch('http://localhost/v1/recommendations?k=10', { headers: { 'X-Edgerec-Session': token } })).json();
      assert.equal(again.arm, list.arm);
      const hit = list.items.find((it) => future.has(it.id));
      if (hit) await (await post({ item: hit.id, type: 'click', exposure: list.exposure }, token)).arrayBuffer();
    };
    for (let i = 0; i < VISITORS; i += 25) {
      await Promise.all(Array.from({ length: Math.min(25, VISITORS - i) }, (_, j) => visit(i + j)));
    }
    assert.deepEqual([...arms.keys()].sort(), [good, bad].sort());

    // Everything forwarded after the responses reaches the log (lists still buffered in the
    // isolate, fewer than one batch, are not sent: the documented cost of batching).
    const stored = () => JSON.parse(run('--db', db, '--json', 'exposures', '--out', join(tmp, 'exposures.csv'))).exposures;
    let count = 0;
    for (let i = 0; i < 100; i++) {
      const now = stored();
      if (now === count && now >= 2 * VISITORS - 20) break;
      count = now;
      await new Promise((ok) => setTimeout(ok, 200));
    }
    assert.ok(count >= 2 * VISITORS - 20, `${count} lists stored of ${2 * VISITORS}`);

    const text = run('--db', db, 'ab', 'report', '--from', kvDir);
    console.log(text);
    const json = run('--db', db, '--json', 'ab', 'report', '--from', kvDir);
    // Kept for `central-sync report --ab` (the README's screenshot).
    mkdirSync(join(root, 'tests/artifacts'), { recursive: true });
    writeFileSync(join(root, 'tests/artifacts/ab.json'), json);
    const report = JSON.parse(json);
    assert.deepEqual(report.arms.map((a) => a.arm), [good, bad]);
    assert.equal(report.srm.mismatch, false, `visitors per arm: ${report.arms.map((a) => a.visitors).join(' / ')}`);
    assert.ok(report.arms.every((a) => Math.abs(a.visitors / VISITORS - 0.5) < 0.05));
    assert.equal(report.winner, good, 'the trained model is found better');
    assert.ok(report.differences[0].high < 0, 'the random arm is worse with 95% confidence');
  } finally {
    await edge.dispose();
  }
});
