// `central-sync report` in a real headless browser (Debian's Chromium via playwright-core): a
// page made from a real eval, a real off-policy evaluation of the Open Bandit sample and a real
// event log with two syncs behind it renders its three sections and charts without errors, and
// a screenshot is saved to tests/artifacts/report.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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
  run(['report', '--eval', join(tmp, 'eval.json'), '--ope', join(tmp, 'ope.json'), '--out', join(tmp, 'report.html')]);
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
  for (const id of ['sync', 'quality', 'ope']) assert.ok(await page.$(`h2#${id}`), `section ${id}`);
  // Six session lengths × five methods, each bar drawn with a real size.
  const bars = await page.$$eval('#quality-chart rect.bar', (rs) => rs.map((r) => r.getBoundingClientRect()));
  assert.equal(bars.length, 30);
  assert.ok(bars.some((b) => b.height > 20 && b.width > 5), 'bars have a visible size');
  // Four estimators and the observed value, each with its interval line.
  assert.equal(await page.$$eval('#ope-chart line.interval', (l) => l.length), 5);
  const text = await page.textContent('body');
  assert.match(text, /uniform over 80 items/);
  assert.match(text, /observed on-policy\s*0\.00380/);
  assert.match(text, /KS statistic, top-10 scores/);
  assert.match(text, /published/);
  assert.deepEqual(requests.filter((u) => !u.startsWith('file://')), [], 'the page fetches nothing');
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
