// Both wasm builds of pkg/ in headless Chromium: the loader's choice (Chromium has relaxed SIMD,
// so `init()` must load edgerec_relaxed_bg.wasm), exact parity of each build with the native
// engine on the parity fixture (target/parity, ids, scores and propensities; exact and two-stage
// scans), and a deterministic sweep of sessions and options, ranked through the two-stage scan,
// on which the two builds must agree exactly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, extname, normalize } from 'node:path';
import { chromium } from 'playwright-core';

const root = new URL('../../', import.meta.url).pathname;
const parity = process.env.PARITY_DIR ?? join(root, 'target/parity');
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
let server, browser, base;

before(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') { res.writeHead(200, { 'Content-Type': 'text/html' }); res.end('<!doctype html><title>builds</title>'); return; }
    const file = path.startsWith('/parity/') ? normalize(join(parity, path.slice(8))) : normalize(join(root, path));
    if (!(file.startsWith(root) || file.startsWith(parity)) || !existsSync(file)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
});

after(async () => {
  await browser?.close();
  server?.close();
});

const shardUrls = () => readdirSync(parity).filter((f) => f.startsWith('shard-')).sort().map((f) => `/parity/${f}`);

// Loads the package in a fresh page, with `build` (a file name) or with init()'s own choice, and
// returns the page's answers: the chosen file, the parity cases' rankings and the sweep's.
async function run(build) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base);
  const out = await page.evaluate(async ({ build, shards }) => {
    const glue = await import('/pkg/edgerec.js');
    if (build) glue.initSync({ module: new Uint8Array(await (await fetch(`/pkg/${build}`)).arrayBuffer()) });
    else await glue.default();
    const engine = glue.Engine.fromShards(await Promise.all(shards.map(async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer()))));
    const cases = await (await fetch('/parity/cases.json')).json();
    const rank = (events, options) => {
      const session = new glue.Session();
      for (const [id, type, ts] of events) session.observe(id, type, ts);
      const r = engine.recommend(session, options);
      session.free();
      return r.map((x) => [x.id, x.score, x.propensity ?? null]);
    };
    const parity = cases.map((c) => rank(c.events, c.options));
    // The same cases through the two-stage scan (first-pass codes, then int8 rescoring).
    const { keep } = await (await fetch('/parity/first-pass.json')).json();
    if (!engine.setFirstPass(keep)) throw new Error('no first pass');
    const twoStage = cases.map((c) => rank(c.events, c.options));
    // The sweep: sessions of 0..7 clicks and varied options, from a fixed linear congruential
    // sequence, so both builds see the same requests.
    let x = 12345;
    const next = (n) => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x % n; };
    const sweep = [];
    for (let i = 0; i < 300; i++) {
      const events = Array.from({ length: next(8) }, (_, t) => [`item-${next(3000)}`, ['view', 'click', 'purchase'][next(3)], 1_700_000_000 + t * 60]);
      const options = { k: 1 + next(30), diversity: next(4) === 0 ? 0.3 : 0, device: ['mobile', 'desktop', 'tablet'][next(3)], ts: 1_700_000_000 + next(86_400 * 30) };
      sweep.push(rank(events, options));
    }
    return { chosen: glue.wasmFileName(), parity, twoStage, sweep };
  }, { build, shards: shardUrls() });
  await page.close();
  assert.deepEqual(errors, []);
  return out;
}

test('init() picks the relaxed-SIMD build in Chromium, and both builds equal the native engine and each other', async () => {
  const cases = JSON.parse(readFileSync(join(parity, 'cases.json'), 'utf8'));
  const auto = await run(null);
  assert.equal(auto.chosen, 'edgerec_relaxed_bg.wasm');
  const simd = await run('edgerec_bg.wasm');
  for (const got of [auto, simd]) {
    got.parity.forEach((ranking, i) => {
      assert.deepEqual(ranking.map((r) => r[0]), cases[i].ids, `case ${i}`);
      assert.deepEqual(ranking.map((r) => r[1]), cases[i].scores, `case ${i}`);
      assert.deepEqual(ranking.map((r) => r[2]), cases[i].propensities, `case ${i}`);
    });
    got.twoStage.forEach((ranking, i) => {
      assert.deepEqual(ranking.map((r) => r[0]), cases[i].twoStage.ids, `two-stage case ${i}`);
      assert.deepEqual(ranking.map((r) => r[1]), cases[i].twoStage.scores, `two-stage case ${i}`);
    });
  }
  assert.equal(auto.sweep.length, 300);
  assert.ok(auto.sweep.every((r) => r.length > 0));
  assert.deepEqual(auto.sweep, simd.sweep);
});
