// Headless Chromium benchmark of the package's two wasm builds (simd128, and relaxed SIMD where
// the engine has it) on the bench models: the same sessions and requests as bench-node, timed
// in the page (cross-origin isolated, so performance.now() has microsecond resolution), and the
// two builds' rankings compared item for item and score for score.
// Input: the directory written by `cargo run --release --example bench_model --features writer`.
import { createServer } from 'node:http';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { join, extname, normalize } from 'node:path';
import { chromium } from 'playwright-core';

const root = new URL('../', import.meta.url).pathname;
const dir = process.argv[2] ?? join(root, 'target/bench');
const line = (s) => console.log(`[bench-browser] ${s}`);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
const shardsOf = (d) => readdirSync(join(dir, d)).filter((f) => /^shard-\d+\.bin$/.test(f))
  .sort((a, b) => parseInt(a.slice(6)) - parseInt(b.slice(6))).map((f) => `/data/${d}/${f}`);

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const file = url.pathname === '/' ? null
    : url.pathname.startsWith('/data/') ? normalize(join(dir, url.pathname.slice(6)))
      : normalize(join(root, url.pathname));
  const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  if (file === null) { res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }); res.end('<!doctype html><title>bench</title>'); return; }
  if (!(file.startsWith(root) || file.startsWith(dir)) || !existsSync(file)) { res.writeHead(404, headers); res.end(); return; }
  res.writeHead(200, { ...headers, 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });

// One page per build (each with its own module instance), timed in alternating rounds so that
// the machine's drift falls on both builds alike.
const BUILDS = ['edgerec_bg.wasm', 'edgerec_relaxed_bg.wasm'];
const ROUNDS = 12;
try {
  const pages = [];
  for (const build of BUILDS) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => line(`page error: ${e}`));
    await page.goto(base);
    const status = await page.evaluate(async ({ build, m100k, m1m }) => {
      const glue = await import('/pkg/edgerec.js');
      const fetchBytes = async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer());
      const bytes = await fetchBytes(`/pkg/${build}`);
      if (!WebAssembly.validate(bytes)) return { skipped: 'not valid on this engine' };
      glue.initSync({ module: bytes });
      const sessions = (await (await fetch('/data/m100k/sessions.json')).json()).map((s) => {
        const session = new glue.Session();
        s.items.forEach((id, t) => session.observe(id, 'click', 1_700_000_000 + t * 60));
        return { session, options: s.options };
      });
      const loads = {};
      const engines = {};
      for (const [name, urls] of [['100k', m100k], ['1M', m1m]]) {
        const shards = await Promise.all(urls.map(fetchBytes));
        const t0 = performance.now();
        engines[name] = glue.Engine.fromShards(shards);
        loads[name] = performance.now() - t0;
      }
      const queries = { '100k': sessions.length, '1M': 40 };
      // One round: every query once, per-call times in ms.
      window.round = (name) => {
        const samples = [];
        for (let i = 0; i < queries[name]; i++) {
          const t = performance.now(); engines[name].recommend(sessions[i].session, sessions[i].options); samples.push(performance.now() - t);
        }
        return samples;
      };
      window.rankings = (name) => sessions.slice(0, queries[name])
        .map((s) => engines[name].recommend(s.session, s.options).map((x) => `${x.id}:${x.score}`).join(','));
      for (const name of ['100k', '1M']) window.round(name); // warm-up
      return { isolated: crossOriginIsolated, loads };
    }, { build, m100k: shardsOf('m100k'), m1m: shardsOf('m1m') });
    pages.push({ build, page, status, samples: { '100k': [], '1M': [] } });
  }
  const live = pages.filter((p) => !p.status.skipped);
  // One model at a time (the 1M model's 64 MB would otherwise evict the 100k model's rows from
  // the cache between rounds), the builds alternating round by round.
  for (const name of ['100k', '1M']) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of live) p.samples[name].push(...await p.page.evaluate((n) => window.round(n), name));
    }
  }
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };
  const fmt = (ms) => `${ms.toFixed(3)} ms`;
  if (live.some((p) => !p.status.isolated)) line('warning: the page is not cross-origin isolated; timer resolution is coarse');
  const [simd, relaxed] = pages;
  const figures = (p) => `recommend 100k x 64 median ${fmt(median(p.samples['100k']))}, p99 ${fmt(pct(p.samples['100k'], 0.99))}; 1M x 64 median ${fmt(median(p.samples['1M']))} (target <= 2 ms); load 100k ${fmt(p.status.loads['100k'])}, 1M ${fmt(p.status.loads['1M'])}`;
  line(`Chromium ${browser.version()}, simd128 build: ${figures(simd)} (target 100k <= 0.300 ms)`);
  if (relaxed.status.skipped) {
    line(`relaxed-SIMD build: ${relaxed.status.skipped}`);
  } else {
    const ratio = median(simd.samples['100k']) / median(relaxed.samples['100k']);
    const ratio1m = median(simd.samples['1M']) / median(relaxed.samples['1M']);
    line(`Chromium ${browser.version()}, relaxed-SIMD build: ${figures(relaxed)} (target 100k <= 0.200 ms) -> ${ratio.toFixed(2)}x (100k), ${ratio1m.toFixed(2)}x (1M) the simd128 build`);
    const differ = [];
    for (const name of ['100k', '1M']) {
      const [a, b] = [await simd.page.evaluate((n) => window.rankings(n), name), await relaxed.page.evaluate((n) => window.rankings(n), name)];
      a.forEach((x, i) => { if (x !== b[i]) differ.push(`${name}#${i}`); });
      if (name === '100k') line(`relaxed vs simd128 rankings (ids and scores), ${a.length} requests on 100k and 40 on 1M: `);
    }
    line(`  ${differ.length === 0 ? 'identical' : `DIFFER in ${differ.length} (${differ.slice(0, 5).join(' ')})`}`);
    if (differ.length) process.exitCode = 1;
  }
} finally {
  await browser.close();
  server.close();
}
