// `central-sync report` in a real headless browser (Debian's Chromium via playwright-core): a
// page made from a real eval, a real off-policy evaluation of the Open Bandit sample, a real
// A/B report over exposures and clicks posted to a real `central-sync serve`, and a real event
// log with two syncs behind it renders its four sections and charts without errors, and a
// screenshot is saved to tests/artifacts/report.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const root = new URL('../../', import.meta.url).pathname;
const artifacts = join(root, 'tests/artifacts');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-report-'));
const cs = join(root, 'target/release/central-sync');
let browser;

// Users walking a ring of 40 items in steps of 4, as the Rust tests' fixtures do.
function writeEvents(path, users, perUser, ts0) {
  let seed = users[0] + 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const lines = ['user,item,ts,type'];
  for (const u of users) {
    let item = (u % 4) + 4 * Math.floor(rand() * 10);
    for (let t = 0; t < perUser; t++) {
      lines.push(`u${u},m${item},${ts0 + u * 10_000 + t * 60},click`);
      item = rand() < 0.8 ? (item + 4) % 40 : Math.floor(rand() * 40);
    }
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

// An A/B log posted through the real ingest: 300 visitors split over two arms by parity, each
// shown one list of five items; arm `vb` is clicked twice as often as `va`.
async function postAbLog(db) {
  const serve = spawn(cs, ['--log', 'warn', '--db', db, 'serve', '--addr', '127.0.0.1:0'],
    { env: { ...process.env, EDGEREC_INGEST_TOKEN: 'report-secret' }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const base = await new Promise((ok) => serve.stdout.once('data', (d) => ok(d.toString().trim().replace('listening on ', ''))));
    const post = async (path, body) => {
      const r = await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { Authorization: 'Bearer report-secret', 'Content-Type': 'application/json' } });
      assert.equal(r.status, 200, await r.text());
    };
    const exposures = [];
    const clicks = [];
    for (let v = 0; v < 300; v++) {
      const arm = v % 2 ? 'vb' : 'va';
      const id = `x${v}`;
      const ts = 978_300_000 + v;
      exposures.push({ id, user: `s${v}`, ts, model: arm, arm, items: Array.from({ length: 5 }, (_, p) => ({ item: `m${(v + p) % 40}`, position: p, score: 1 - p / 10, propensity: 1 })) });
      if (v % (arm === 'vb' ? 3 : 6) === 0 || (arm === 'vb' && v % 3 === 1)) clicks.push({ user: `s${v}`, item: `m${v % 40}`, ts: ts + 5, type: 'click', exposure: id });
    }
    for (let i = 0; i < exposures.length; i += 100) await post('/v1/exposures', exposures.slice(i, i + 100));
    for (let i = 0; i < clicks.length; i += 100) await post('/v1/events', clicks.slice(i, i + 100));
  } finally {
    serve.kill();
  }
}

const run = (args, env = {}) => execFileSync(cs, ['--log', 'warn', ...args], { env: { ...process.env, EDGEREC_DB: join(tmp, 'events.db'), ...env } });

before(async () => {
  const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);
  writeEvents(join(tmp, 'a.csv'), range(0, 40), 12, 978_300_000);
  writeEvents(join(tmp, 'b.csv'), range(40, 60), 12, 978_900_000);
  const sync = ['sync', '--to', `dir:${join(tmp, 'kv')}`, '--work-dir', join(tmp, 'work'), '--dim', '8', '--epochs', '2'];
  run(['import', join(tmp, 'a.csv')]);
  run(sync);
  run(['import', join(tmp, 'b.csv')]);
  run(sync);
  writeFileSync(join(tmp, 'eval.json'), run(['--json', 'eval', '--events', join(tmp, 'a.csv'), '--dim', '8', '--epochs', '2']));
  writeFileSync(join(tmp, 'ope.json'), run(['--json', 'ope', '--exposures', join(root, 'data/obd/bts.csv'),
    '--on-policy-exposures', join(root, 'data/obd/random.csv'), '--resamples', '500']));
  const abDb = join(tmp, 'ab.db');
  await postAbLog(abDb);
  writeFileSync(join(tmp, 'ab.json'), run(['--db', abDb, '--json', 'ab', 'report', '--split', 'va=50,vb=50']));
  run(['report', '--eval', join(tmp, 'eval.json'), '--ope', join(tmp, 'ope.json'), '--ab', join(tmp, 'ab.json'), '--out', join(tmp, 'report.html')]);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

test('the report renders its sections and charts without errors', async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 1400 } });
  const errors = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`file://${join(tmp, 'report.html')}`);
  for (const id of ['sync', 'quality', 'ab', 'ope']) assert.ok(await page.$(`h2#${id}`), `section ${id}`);
  // Six session lengths × five methods, each bar drawn with a real size.
  const bars = await page.$$eval('#quality-chart rect.bar', (rs) => rs.map((r) => r.getBoundingClientRect()));
  assert.equal(bars.length, 30);
  assert.ok(bars.some((b) => b.height > 20 && b.width > 5), 'bars have a visible size');
  // Four estimators and the observed value, each with its interval line.
  assert.equal(await page.$$eval('#ope-chart line.interval', (l) => l.length), 5);
  // Two arms, each with its interval line.
  assert.equal(await page.$$eval('#ab-chart line.interval', (l) => l.length), 2);
  const text = await page.textContent('body');
  assert.match(text, /Sample ratio: χ² 0\.00 \(1 df\), p = 1\.000: consistent with the split/);
  assert.match(text, /Better arm: vb/);
  assert.match(text, /uniform over 80 items/);
  assert.match(text, /observed on-policy\s*0\.00380/);
  assert.match(text, /KS statistic, top-10 scores/);
  assert.match(text, /published/);
  assert.deepEqual(requests.filter((u) => !u.startsWith('file://')), [], 'the page fetches nothing');
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
