// The demo page in a real headless browser (Debian's Chromium via playwright-core), against the
// real worker under Miniflare with a model trained and published by central-sync. Clicks three
// horror films and checks that horror's share of the top 10 rises in the in-browser list and in
// the edge list, that nothing is logged as an error, and saves a screenshot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, extname, normalize } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../support/edge.mjs';
import { chromium } from 'playwright-core';

const root = new URL('../../', import.meta.url).pathname;
const www = join(root, 'www');
const artifacts = join(root, 'tests/artifacts');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-browser-'));
let mf, server, browser, base;

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.csv': 'text/csv' };

before(async () => {
  const cs = join(root, 'target/release/central-sync');
  execFileSync(cs, ['--log', 'warn', 'train', '--events', join(root, 'data/ml-100k/events.csv'), '--items', join(root, 'data/ml-100k/items.csv'),
    '--out', join(tmp, 'model'), '--epochs', '3', '--dim', '16', '--no-tune', '--encoder-epochs', '1', '--alpha', '4', '--beta', '1']);
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', join(tmp, 'model'), '--to', `dir:${join(tmp, 'kv')}`]);
  mkdirSync(join(www, 'data'), { recursive: true });
  execFileSync('cp', [join(root, 'data/ml-100k/items.csv'), join(www, 'data/items.csv')]);
  mf = workerMiniflare({ SESSION_KEY: 'browser-test-session-key-0123', CHECK_INTERVAL_SECONDS: '30', INGEST_URL: '' });
  await copyDirToKv(join(tmp, 'kv'), await mf.getKVNamespace('MODELS'));

  // Static files from www/, the API from the worker: what `wrangler dev` does with [assets].
  server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname.startsWith('/v1/')) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const r = await mf.dispatchFetch(`http://localhost${url.pathname}${url.search}`, {
        method: req.method, headers: req.headers, body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      res.writeHead(r.status, Object.fromEntries(r.headers));
      res.end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    const file = normalize(join(www, url.pathname === '/' ? 'index.html' : url.pathname));
    if (!file.startsWith(www) || !existsSync(file) || statSync(file).isDirectory()) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
  await mf?.dispose();
});

const horrorShare = (page, list) => page.$$eval(`#${list} li`, (lis) => lis.filter((li) => li.dataset.genres.split('|').includes('Horror')).length / Math.max(1, lis.length));

test('clicking three horror films moves both lists toward horror, without errors', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const exposurePosts = [];
  page.on('response', async (r) => {
    if (r.url().endsWith('/v1/exposures')) exposurePosts.push({ status: r.status(), body: await r.json().catch(() => null), sent: JSON.parse(r.request().postData()) });
  });
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.equal(await page.$$eval('#local-list li', (l) => l.length), 10);
  assert.equal(await page.$$eval('#edge-list li', (l) => l.length), 10);
  const before = { local: await horrorShare(page, 'local-list'), edge: await horrorShare(page, 'edge-list') };

  await page.click('#genres .chip[data-genre="Horror"]');
  const ids = await page.$$eval('#grid .card', (cards) => {
    const pure = cards.filter((c) => c.dataset.genres === 'Horror');
    return (pure.length >= 3 ? pure : cards).slice(0, 3).map((c) => c.dataset.id);
  });
  for (const [n, id] of ids.entries()) {
    await page.click(`#grid .card[data-id="${id}"]`);
    await page.waitForSelector(`body[data-clicks="${n + 1}"]`, { timeout: 15_000 });
  }
  const after = { local: await horrorShare(page, 'local-list'), edge: await horrorShare(page, 'edge-list') };
  assert.ok(after.local > before.local, `in-browser horror share ${before.local} -> ${after.local}`);
  assert.ok(after.edge > before.edge, `edge horror share ${before.edge} -> ${after.edge}`);
  const localIds = await page.$$eval('#local-list li', (l) => l.map((li) => li.dataset.id));
  assert.ok(ids.every((id) => !localIds.includes(id)), 'clicked films are not recommended again');
  // Once the visitor has a session, each in-browser list is posted as an exposure; the edge
  // takes it (this worker has no ingest, so it says it did not log it).
  for (let i = 0; i < 50 && exposurePosts.length < 2; i++) await new Promise((ok) => setTimeout(ok, 100));
  assert.ok(exposurePosts.length >= 2, `${exposurePosts.length} exposure posts`);
  for (const x of exposurePosts) {
    assert.equal(x.status, 200, JSON.stringify(x.body));
    assert.equal(x.body.logged, false);
    assert.equal(x.sent.items.length, 10);
    assert.ok(x.sent.items.every((it, i) => it.position === i && it.propensity === 1));
  }
    const ms = Number(await page.$eval('#local-timing', (e) => e.dataset.ms));
  console.log(`[browser] in-browser ranking of 1,682 items took ${ms.toFixed(3)} ms; horror share local ${before.local} -> ${after.local}, edge ${before.edge} -> ${after.edge}`);
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'browser.png'), fullPage: true });
  assert.deepEqual(errors, []);
});

test('a clear message when the model cannot be loaded', async () => {
  const page = await browser.newPage();
  await page.route('**/v1/model', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":{"code":"no_model","message":"no model is loaded"}}' }));
  await page.goto(base);
  await page.waitForSelector('#error:not([hidden])', { timeout: 15_000 });
  assert.match(await page.textContent('#error'), /model could not be loaded: no model is loaded/);
});
