// The fault run of `make bench`: the built worker in workerd (Miniflare, real local KV) under
// load from concurrent visitors, forwarding to a real `central-sync serve` (real HTTP, real
// SQLite), while things break:
//   - a publish is interrupted mid-way: `models/current` names a version whose shards are
//     missing, then one whose shard is corrupt;
//   - KV answers without the pointer (deleted) for a while;
//   - the ingest process is killed (SIGKILL) and comes back only after a while;
//   - finally a complete publish of the new version.
// It checks, and prints: no 5xx to visitors; every recommendation during the faults came from the
// last good model; every event accepted with a 2xx is in the central log afterwards (the edge's
// KV spool delivers what the ingest missed, on the cron).
//
// KV itself answering 5xx cannot be produced by Miniflare's local KV; missing and corrupt values
// are what this run injects.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { workerMiniflare, copyDirToKv } from '../tests/support/edge.mjs';
import { writeRandomNpy } from '../tests/support/npy.mjs';

const root = new URL('../', import.meta.url).pathname;
const cs = join(root, 'target/release/central-sync');
const tmp = mkdtempSync(join(tmpdir(), 'edgerec-fault-'));
const SECONDS = Number(process.env.FAULT_SECONDS || 40);
const CLIENTS = Number(process.env.FAULT_CLIENTS || 8);
const ITEMS = 500;
const TOKEN = 'fault-run-ingest-token';
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** A packed model of ITEMS random 32-dim vectors (ids "1".."500"), in `dir`. */
function packModel(dir, seed) {
  writeRandomNpy(join(tmp, `v${seed}.npy`), ITEMS, 32, seed);
  writeFileSync(join(tmp, 'ids.txt'), Array.from({ length: ITEMS }, (_, i) => `${i + 1}\n`).join(''));
  execFileSync(cs, ['--log', 'warn', 'pack', '--embeddings', join(tmp, `v${seed}.npy`), '--ids', join(tmp, 'ids.txt'), '--out', dir]);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  return { dir, manifest, version: manifest.version };
}

const freePort = () => new Promise((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); }); });

/** `central-sync serve` on `port`; resolves once it listens. */
function startIngest(port, db) {
  const child = spawn(cs, ['--log', 'warn', '--db', db, 'serve', '--addr', `127.0.0.1:${port}`], { env: { ...process.env, EDGEREC_INGEST_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((ok, fail) => {
    child.stdout.on('data', (d) => { if (String(d).includes('listening on')) ok(child); });
    child.on('exit', (code, signal) => fail(new Error(`ingest exited (${code ?? signal})`)));
  });
}

const good = packModel(join(tmp, 'good'), 1);
const next = packModel(join(tmp, 'next'), 2);
const port = await freePort();
const db = join(tmp, 'events.db');
let ingest = await startIngest(port, db);
// Never leave an ingest process behind, however this run ends.
process.on('exit', () => ingest.kill('SIGKILL'));
const mf = workerMiniflare({
  SESSION_KEY: 'fault-run-session-key-0123456789', CHECK_INTERVAL_SECONDS: '1', INGEST_URL: `http://127.0.0.1:${port}/v1/events`,
  INGEST_TOKEN: TOKEN, EVENTS_PER_MINUTE_PER_SESSION: '100000', EVENTS_PER_MINUTE_PER_IP: '1000000',
  // The default of the worker (20 ingest requests per cron run, each up to 1,000 events).
});
const kv = await mf.getKVNamespace('MODELS');
const worker = await mf.getWorker();
const publish = async (model) => {
  const kvDir = join(tmp, `kv-${model.version}`);
  execFileSync(cs, ['--log', 'warn', 'publish', '--model', model.dir, '--to', `dir:${kvDir}`]);
  await copyDirToKv(kvDir, kv);
};
await publish(good);

const stats = { requests: 0, status: {}, accepted: 0, served: {}, servedDuringFaults: {}, errors: [] };
let faults = true;
const t0 = Date.now();
const count = (map, key) => { map[key] = (map[key] || 0) + 1; };

async function visitor(c) {
  let token = '';
  for (let n = 0; Date.now() - t0 < SECONDS * 1000; n++) {
    const events = Array.from({ length: 1 + (n % 3) }, (_, i) => ({ item: String(1 + ((c * 97 + n * 13 + i) % ITEMS)), id: `c${c}-${n}-${i}`, type: 'click' }));
    const headers = { 'Content-Type': 'application/json', ...(token ? { 'X-Edgerec-Session': token } : {}) };
    const posted = await mf.dispatchFetch('http://localhost/v1/events', { method: 'POST', body: JSON.stringify(events), headers });
    stats.requests++;
    count(stats.status, posted.status);
    const answer = await posted.json();
    if (posted.status >= 200 && posted.status < 300) {
      stats.accepted += answer.accepted;
      token = answer.session;
    } else if (posted.status >= 500) stats.errors.push(answer);
    const rec = await mf.dispatchFetch('http://localhost/v1/recommendations?k=10', { headers: token ? { 'X-Edgerec-Session': token } : {} });
    stats.requests++;
    count(stats.status, rec.status);
    const body = await rec.json();
    if (rec.status >= 500) stats.errors.push(body);
    count(stats.served, String(body.model));
    if (faults) count(stats.servedDuringFaults, String(body.model));
    await sleep(5);
  }
}

async function breakThings() {
  const at = (s) => sleep(Math.max(0, t0 + s * 1000 - Date.now()));
  const corruptShard = () => {
    const bytes = new Uint8Array(readFileSync(join(next.dir, next.manifest.shards[0].file)));
    bytes[bytes.length >> 1] ^= 0xff;
    return bytes;
  };
  await at(4);
  console.log('[fault] t=4s  interrupted publish: the pointer names a version with no shards');
  // Copies, not Buffers: Miniflare's proxy cannot serialise pooled Buffer views.
  await kv.put(`models/${next.version}/manifest.json`, readFileSync(join(next.dir, 'manifest.json'), 'utf8'));
  await kv.put('models/current', next.version);
  await at(9);
  console.log('[fault] t=9s  the version\'s shard arrives corrupt');
  await kv.put(`models/${next.version}/${next.manifest.shards[0].file}`, corruptShard());
  await at(14);
  console.log('[fault] t=14s KV has no pointer');
  await kv.delete('models/current');
  await at(17);
  console.log('[fault] t=17s ingest killed (SIGKILL)');
  ingest.kill('SIGKILL');
  await at(20);
  await kv.put('models/current', good.version);
  await at(29);
  console.log('[fault] t=29s ingest back');
  ingest = await startIngest(port, db);
  await at(32);
  console.log('[fault] t=32s complete publish of the new version');
  faults = false;
  await publish(next);
}

await Promise.all([breakThings(), ...Array.from({ length: CLIENTS }, (_, c) => visitor(c))]);
// Forwards still in `waitUntil` finish (retries take up to ~6 s), then the cron drains the spool.
await sleep(8000);
async function countSpool() {
  let n = 0;
  let cursor;
  for (;;) {
    const page = await kv.list({ prefix: 'spool/', cursor });
    n += page.keys.length;
    if (page.list_complete) return n;
    cursor = page.cursor;
  }
}
let spooled = await countSpool();
const spooledAtEnd = spooled;
let cronRuns = 0;
for (; cronRuns < 20 && spooled > 0; cronRuns++) {
  await worker.scheduled({ cron: '*/5 * * * *' });
  spooled = await countSpool();
}
const stored = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).events;
ingest.kill('SIGINT');
await mf.dispose();

const fiveXX = Object.entries(stats.status).filter(([s]) => Number(s) >= 500).reduce((a, [, n]) => a + n, 0);
const badDuringFaults = Object.keys(stats.servedDuringFaults).filter((v) => v !== good.version);
console.log(`[bench-fault] ${SECONDS} s, ${CLIENTS} visitors, ${stats.requests} requests; statuses ${JSON.stringify(stats.status)}; 5xx: ${fiveXX}`);
console.log(`[bench-fault] served during the faults: ${JSON.stringify(stats.servedDuringFaults)} (last good ${good.version}); after the complete publish: ${stats.served[next.version] || 0} from ${next.version}`);
console.log(`[bench-fault] events accepted with 2xx: ${stats.accepted}; in the central log afterwards: ${stored}; batches spooled while the ingest was down: ${spooledAtEnd}, left after ${cronRuns} cron run(s): ${spooled}`);
const ok = fiveXX === 0 && badDuringFaults.length === 0 && stored === stats.accepted && spooled === 0 && (stats.served[next.version] || 0) > 0;
if (stats.errors.length) console.log('[bench-fault] first errors:', JSON.stringify(stats.errors.slice(0, 3)));
console.log(`[bench-fault] ${ok ? 'PASS' : 'FAIL'}: zero 5xx, the last good model served through the faults, every accepted event stored`);
process.exit(ok ? 0 : 1);
