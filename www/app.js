// edgerec demo: the same model ranks in the browser (WASM) and at the edge (the worker).
import init, { Engine, Session } from './pkg/edgerec.js';

const $ = (id) => document.getElementById(id);
const state = { engine: null, session: null, token: null, items: new Map(), clicked: [], genre: 'All', version: null };

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
  $('status').textContent = 'Model not loaded';
}

async function loadItems() {
  // Titles and genres (id,title,year,genres). Optional: without it the page shows ids.
  try {
    const res = await fetch('data/items.csv');
    if (!res.ok) return;
    const lines = (await res.text()).trim().split('\n').slice(1);
    for (const line of lines) {
      const first = line.indexOf(','), last = line.lastIndexOf(','), prev = line.lastIndexOf(',', last - 1);
      const id = line.slice(0, first);
      let title = line.slice(first + 1, prev).replace(/^"|"$/g, '').replace(/""/g, '"');
      state.items.set(id, { id, title, year: line.slice(prev + 1, last), genres: line.slice(last + 1).split('|').filter(Boolean) });
    }
  } catch { /* titles are decoration */ }
}

function item(id) {
  return state.items.get(id) ?? { id, title: `Item ${id}`, year: '', genres: [] };
}

function context() {
  // A fixed reference week (Mon 2 Jun 2025 UTC), so the time controls pick the time-of-week bin.
  const day = $('weekend').checked ? 5 : 0;
  const ts = Date.UTC(2025, 5, 2 + day, Number($('hour').value)) / 1000;
  return { device: $('device').value, geohash: $('geo').value, ts, tzOffsetMin: 0 };
}

// Each list shown is logged as an exposure (the edge logs its own; the browser's is posted to
// /v1/exposures once the visitor has a session); a click on a list names it.
function renderList(el, list, exposure = null) {
  el.innerHTML = '';
  for (const r of list) {
    const it = item(r.id);
    const li = document.createElement('li');
    li.dataset.id = r.id;
    li.dataset.genres = it.genres.join('|');
    li.innerHTML = `<span class="score">${r.score == null ? '' : r.score.toFixed(2)}</span><span class="title"></span><span class="meta"></span>`;
    li.querySelector('.title').textContent = it.title;
    li.querySelector('.meta').textContent = [it.year, it.genres.slice(0, 2).join(', ')].filter(Boolean).join(' · ');
    li.addEventListener('click', () => click(r.id, exposure));
    el.appendChild(li);
  }
}

function rankLocal() {
  const t0 = performance.now();
  const list = state.engine.recommend(state.session, { k: 10, ...context() });
  const ms = performance.now() - t0;
  renderList($('local-list'), list);
  if (state.token && state.version && list.length) logLocalList(list);
  $('local-timing').textContent = `ranked ${state.engine.itemCount.toLocaleString()} items in ${ms < 1 ? ms.toFixed(3) : ms.toFixed(1)} ms`;
  $('local-timing').dataset.ms = String(ms);
}

async function logLocalList(list) {
  const el = $('local-list');
  try {
    const res = await fetch('/v1/exposures', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Edgerec-Session': state.token },
      body: JSON.stringify(state.engine.exposure(list, state.version)),
    });
    const body = await res.json();
    // Only if the list on screen is still this one.
    if (res.ok && body.logged && el.firstChild?.dataset.id === list[0].id) renderList(el, list, body.exposures[0]);
  } catch { /* the log is best effort; the list stays */ }
}

async function rankEdge() {
  const c = context();
  const params = new URLSearchParams({ k: '10', device: c.device, geohash: c.geohash, ts: String(c.ts), tz_offset_min: '0' });
  const t0 = performance.now();
  try {
    const res = await fetch(`/v1/recommendations?${params}`, { headers: state.token ? { 'X-Edgerec-Session': state.token } : {} });
    const body = await res.json();
    const ms = performance.now() - t0;
    if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    renderList($('edge-list'), body.items, body.exposure ?? null);
    $('edge-timing').textContent = `${body.fallback ? 'fallback list' : `model ${body.model}`} · round trip ${ms.toFixed(1)} ms`;
  } catch (e) {
    $('edge-timing').textContent = `edge unavailable: ${e.message}`;
  }
}

async function click(id, exposure = null) {
  state.session.observe(id, 'click', Math.floor(Date.now() / 1000));
  state.clicked.push(id);
  renderSession();
  rankLocal();
  try {
    const res = await fetch('/v1/events', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(state.token ? { 'X-Edgerec-Session': state.token } : {}) },
      body: JSON.stringify({ item: id, type: 'click', ...(exposure ? { exposure } : {}) }),
    });
    const body = await res.json();
    if (res.ok) state.token = body.session;
    else $('edge-timing').textContent = `edge rejected the click: ${body.error?.message}`;
  } catch (e) {
    $('edge-timing').textContent = `edge unavailable: ${e.message}`;
  }
  await rankEdge();
  renderGrid();
  document.body.dataset.clicks = String(state.clicked.length);
}

function renderSession() {
  const box = $('session');
  box.innerHTML = '';
  for (const id of state.clicked.slice(-24)) {
    const chip = document.createElement('span');
    chip.className = 'chip';
    chip.textContent = item(id).title;
    box.appendChild(chip);
  }
  $('session-count').textContent = state.clicked.length ? `${state.clicked.length} click${state.clicked.length > 1 ? 's' : ''}` : 'no clicks yet';
}

function renderGenres() {
  const genres = ['All', ...new Set([...state.items.values()].flatMap((i) => i.genres))].filter((g) => g !== 'unknown');
  const box = $('genres');
  box.innerHTML = '';
  for (const g of genres) {
    const chip = document.createElement('span');
    chip.className = 'chip' + (g === state.genre ? ' active' : '');
    chip.textContent = g;
    chip.dataset.genre = g;
    chip.addEventListener('click', () => { state.genre = g; renderGenres(); renderGrid(); });
    box.appendChild(chip);
  }
}

function renderGrid() {
  const grid = $('grid');
  grid.innerHTML = '';
  // Popular items first (the model's own popularity order: a session-less ranking).
  const ids = state.catalog.filter((id) => state.genre === 'All' || item(id).genres.includes(state.genre)).slice(0, 36);
  for (const id of ids) {
    const it = item(id);
    const card = document.createElement('button');
    card.className = 'card' + (state.clicked.includes(id) ? ' clicked' : '');
    card.dataset.id = id;
    card.dataset.genres = it.genres.join('|');
    card.innerHTML = '<span class="title"></span><span class="meta"></span>';
    card.querySelector('.title').textContent = it.title;
    card.querySelector('.meta').textContent = [it.year, it.genres.join(', ')].filter(Boolean).join(' · ');
    card.addEventListener('click', () => click(id));
    grid.appendChild(card);
  }
}

async function main() {
  await init();
  await loadItems();
  let manifest;
  try {
    const res = await fetch('/v1/model');
    manifest = await res.json();
    if (!res.ok) throw new Error(manifest.error?.message ?? `HTTP ${res.status}`);
    const shards = await Promise.all(manifest.shards.map(async (_, i) => {
      const r = await fetch(`/v1/model/${manifest.version}/shard-${i}.bin`);
      if (!r.ok) throw new Error(`shard ${i}: HTTP ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    }));
    const t0 = performance.now();
    state.engine = Engine.fromShards(shards);
    const loadMs = performance.now() - t0;
    state.version = manifest.version;
    $('status').textContent = `model ${manifest.version} · ${manifest.items.toLocaleString()} items · loaded in ${loadMs.toFixed(1)} ms`;
    $('status').className = 'status ok';
  } catch (e) {
    showError(`The model could not be loaded: ${e.message}. Publish one with \`central-sync publish --to local\` (make demo does this).`);
    return;
  }
  state.session = new Session();
  state.catalog = state.engine.recommend(state.session, { k: 400 }).map((r) => r.id);
  renderGenres();
  renderGrid();
  renderSession();
  rankLocal();
  await rankEdge();
  for (const id of ['device', 'hour', 'weekend', 'geo']) {
    $(id).addEventListener('input', () => { $('hour-label').textContent = `${$('hour').value.padStart(2, '0')}:00`; rankLocal(); rankEdge(); });
  }
  $('reset').addEventListener('click', () => { state.session = new Session(); state.token = null; state.clicked = []; renderSession(); renderGrid(); rankLocal(); rankEdge(); });
  document.body.dataset.ready = 'true';
}

main().catch((e) => showError(`The demo failed to start: ${e.message}`));
