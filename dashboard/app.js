// apiary dashboard: plain JavaScript, no framework, no build step.
// Every string that can come from an attacker (usernames, commands, URLs, payloads) is put in
// the page as text (textContent), never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { me: null, page: null, live: null, liveTotal: 0, overviewRange: '24h', alertWindow: '10m' };

// ---------------------------------------------------------------------------------------------
// Helpers.

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

const pad = (n) => String(n).padStart(2, '0');
function fmtTime(v) {
  // Events carry RFC 3339 strings; the store's own records carry microseconds.
  const d = typeof v === 'number' ? new Date(v / 1000) : new Date(v);
  if (isNaN(d)) return String(v ?? '');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function ago(micros) {
  if (!micros) return 'never';
  const s = Math.max(0, Math.round((Date.now() - micros / 1000) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
const fmtNum = (n) => Number(n || 0).toLocaleString('en-US');
const clip = (s, n) => { s = String(s ?? ''); return s.length > n ? s.slice(0, n - 1) + '…' : s; };

function b64text(b64) {
  try {
    const bin = atob(b64 || '');
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  } catch (_) { return ''; }
}

function printable(s) {
  // Shows control bytes as escapes so a payload cannot reshape the table.
  return String(s).replace(/\r?\n/g, '⏎').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

function summary(e) {
  if (e.auth) return `${e.auth.username ?? ''} / ${e.auth.password ?? ''}${e.auth.success ? ' (accepted)' : ''}`;
  if (e.command) return e.command.input;
  if (e.http) return `${e.http.method} ${e.http.target}${e.http.user_agent ? '  ' + e.http.user_agent : ''}`;
  if (e.dns) return `${e.dns.qname} ${e.dns.qtype}`;
  if (e.download) return e.download.url;
  if (e.payload) return `${e.payload.len} bytes: ${printable(b64text(e.payload.b64)).slice(0, 80)}`;
  if (e.close) return `closed (${e.close.reason}) after ${e.close.duration_ms} ms, ${e.close.bytes_in} in / ${e.close.bytes_out} out`;
  if (e.pot_info) return `${e.pot_info.event_type ?? ''} ${e.message ?? ''}`;
  if (e.flow) return `${e.flow.state ?? ''}`;
  return e.message ?? '';
}

function source(e) {
  if (!e.src_ip) return '';
  return e.src_port ? `${e.src_ip}:${e.src_port}` : e.src_ip;
}

async function api(path, opts = {}) {
  const headers = Object.assign({ 'accept': 'application/json' }, opts.headers || {});
  const method = opts.method || 'GET';
  if (method !== 'GET') headers['x-apiary-csrf'] = '1';
  let body = opts.body;
  if (body !== undefined && typeof body !== 'string') { body = JSON.stringify(body); headers['content-type'] = 'application/json'; }
  const r = await fetch('/api/v1' + path, { method, headers, body, credentials: 'same-origin' });
  if (r.status === 401 && !opts.noLoginRedirect) { showLogin(); throw new Error('not logged in'); }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new Error((data && data.error) || `HTTP ${r.status}`);
  return data;
}

// ---------------------------------------------------------------------------------------------
// Login.

function showLogin(msg) {
  stopLive();
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
  $('login-token').focus();
}

async function login(token) {
  try {
    state.me = await api('/login', { method: 'POST', body: { token }, noLoginRedirect: true });
    return true;
  } catch (e) {
    showLogin(e.message);
    return false;
  }
}

async function boot() {
  const m = location.hash.match(/token=([A-Za-z0-9_]+)/);
  if (m) {
    // The token came in the URL fragment (never sent to the server); trade it for a cookie
    // and remove it from the address bar and history.
    history.replaceState(null, '', location.pathname + '#/overview');
    if (!(await login(m[1]))) return;
  } else {
    try { state.me = await api('/me', { noLoginRedirect: true }); } catch (_) { showLogin(); return; }
  }
  start();
}

function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('who').textContent = `${state.me.name} (${state.me.role})`;
  startLive();
  route();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (await login($('login-token').value.trim())) { $('login-token').value = ''; if (!location.hash || location.hash === '#') location.hash = '#/overview'; start(); }
});
$('logout').addEventListener('click', async () => { await api('/logout', { method: 'POST' }).catch(() => {}); state.me = null; showLogin(); });

// ---------------------------------------------------------------------------------------------
// Routing.

const pages = ['overview', 'live', 'search', 'session', 'nodes', 'node', 'enroll', 'alerts'];
function route() {
  if (!state.me) return;
  const parts = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  let page = parts[0];
  if (page === 'nodes' && parts[1]) page = 'node';
  if (!pages.includes(page)) page = 'overview';
  state.page = page;
  for (const p of pages) $('page-' + p).hidden = p !== page;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.dataset.page === page || (page === 'node' && a.dataset.page === 'nodes') || (page === 'session' && a.dataset.page === 'search'));
  const arg = decodeURIComponent(parts[1] || '');
  ({ overview: loadOverview, live: renderLiveAll, search: () => {}, session: () => loadSession(arg), nodes: loadNodes, node: () => loadNode(arg), enroll: () => {}, alerts: loadAlerts })[page]();
}
// A pasted login URL (#token=...) logs in even when the page is already open.
window.addEventListener('hashchange', () => { if (/token=/.test(location.hash)) boot(); else route(); });

// ---------------------------------------------------------------------------------------------
// Overview.

function topTable(table, rows, label) {
  clear(table);
  const max = Math.max(1, ...rows.map((r) => r.count));
  if (!rows.length) { table.append(el('tr', null, el('td', { class: 'muted' }, 'nothing yet'))); return; }
  for (const r of rows) {
    const bar = el('div', { class: 'bar-fill' });
    bar.style.width = `${Math.max(2, (100 * r.count) / max)}%`;
    table.append(el('tr', null, el('td', { class: 'key', title: label(r) }, clip(label(r), 60)), el('td', { class: 'barcell' }, bar), el('td', { class: 'count' }, fmtNum(r.count))));
  }
}

function drawChart(canvas, timeline) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 800, h = canvas.clientHeight || 180;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pts = timeline.points;
  const max = Math.max(1, ...pts.map((p) => p[1]));
  const left = 48, bottom = 22, top = 8;
  const bw = (w - left - 4) / Math.max(1, pts.length);
  ctx.fillStyle = '#8b98a9'; ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'right';
  for (const f of [0, 0.5, 1]) {
    const y = top + (h - top - bottom) * (1 - f);
    ctx.fillText(fmtNum(Math.round(max * f)), left - 6, y + 4);
    ctx.strokeStyle = '#2a3442'; ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
  }
  ctx.fillStyle = '#f5b82e';
  pts.forEach((p, i) => {
    const bh = ((h - top - bottom) * p[1]) / max;
    ctx.fillRect(left + i * bw + 1, h - bottom - bh, Math.max(1, bw - 2), bh);
  });
  ctx.fillStyle = '#8b98a9';
  const labels = Math.min(6, pts.length);
  for (let k = 0; k < labels; k++) {
    const i = Math.floor((k * (pts.length - 1)) / Math.max(1, labels - 1));
    // The last label ends at the right edge instead of running off it.
    ctx.textAlign = k === labels - 1 && labels > 1 ? 'right' : 'center';
    const d = new Date(pts[i][0] / 1000);
    const txt = timeline.step_secs >= 3600 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}h` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    ctx.fillText(txt, k === labels - 1 && labels > 1 ? w - 2 : left + i * bw + bw / 2, h - 6);
  }
}

// The source map: equirectangular, x = longitude, y = -latitude, on the hand-drawn outline in
// world.js; one dot per whole-degree cell, its area proportional to the events from there.
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function drawMap(map, points) {
  clear(map);
  for (let lon = -150; lon <= 150; lon += 30) map.append(svg('line', { class: 'grat', x1: lon, y1: -85, x2: lon, y2: 60 }));
  for (let lat = -60; lat <= 80; lat += 30) map.append(svg('line', { class: 'grat', x1: -180, y1: -lat, x2: 180, y2: -lat }));
  for (const ring of window.APIARY_WORLD || []) {
    map.append(svg('polygon', { class: 'land', points: ring.map(([x, y]) => `${x},${-y}`).join(' ') }));
  }
  const max = Math.max(1, ...points.map((p) => p.count));
  // Smallest last, so a busy cell never hides a quiet neighbour.
  for (const p of [...points].sort((a, b) => b.count - a.count)) {
    const dot = svg('circle', { class: 'dot', cx: p.lon, cy: -p.lat, r: (0.8 + 5 * Math.sqrt(p.count / max)).toFixed(2) });
    const title = svg('title');
    title.textContent = `${p.lat}°, ${p.lon}°: ${fmtNum(p.count)} events`;
    dot.append(title);
    map.append(dot);
  }
}

function showGeo(ov) {
  // No GeoIP database configured: no map, no message, nothing to fail.
  $('ov-geo').hidden = !ov.geoip;
  if (!ov.geoip) return;
  topTable($('ov-countries-t'), ov.top_countries, (r) => r.key);
  const map = $('ov-map');
  map.style.display = ov.map.length || !ov.top_countries.length ? '' : 'none';
  $('ov-map-note').textContent = ov.map.length ? `(${fmtNum(ov.map.length)} places)` : (ov.top_countries.length ? '(a Country database has no locations: countries only)' : '');
  drawMap(map, ov.map);
}

async function loadOverview() {
  const [ov, nodes] = await Promise.all([api(`/stats/overview?since=${state.overviewRange}`), api('/nodes')]);
  if (state.page !== 'overview') return;
  $('ov-total').textContent = fmtNum(ov.total);
  $('ov-nodes').textContent = `${nodes.filter((n) => n.connected).length} / ${nodes.length}`;
  $('ov-sources').textContent = fmtNum(ov.top_sources.length);
  $('ov-step').textContent = `(${ov.timeline.step_secs >= 3600 ? ov.timeline.step_secs / 3600 + ' h' : ov.timeline.step_secs / 60 + ' min'} per bar)`;
  state.lastTimeline = ov.timeline;
  drawChart($('ov-chart'), ov.timeline);
  topTable($('ov-sources-t'), ov.top_sources, (r) => r.key);
  topTable($('ov-creds-t'), ov.top_credentials, (r) => `${r.username ?? '∅'} / ${r.password ?? '∅'}`);
  topTable($('ov-cmds-t'), ov.top_commands, (r) => printable(r.key));
  topTable($('ov-svc-t'), ov.top_services, (r) => r.key);
  topTable($('ov-kinds-t'), ov.top_kinds, (r) => r.key);
  showGeo(ov);
}

$('range').addEventListener('click', (ev) => {
  const b = ev.target.closest('button'); if (!b) return;
  state.overviewRange = b.dataset.range;
  for (const x of $('range').querySelectorAll('button')) x.classList.toggle('on', x === b);
  loadOverview();
});
window.addEventListener('resize', () => { if (state.page === 'overview' && state.lastTimeline) drawChart($('ov-chart'), state.lastTimeline); });
setInterval(() => { if (state.page === 'overview' && !document.hidden) loadOverview().catch(() => {}); }, 10000);

// ---------------------------------------------------------------------------------------------
// Live stream: events arrive in batches over SSE, are queued, and rendered once per animation
// frame, so a flood costs one DOM update per frame whatever the event rate.

const LIVE_KEEP = 2000;   // events kept for re-filtering
const LIVE_ROWS = 200;    // rows in the table
const live = { ring: [], queue: [], paused: false, filter: '', received: 0, lagged: 0, rateCount: 0, rate: 0, lagMs: 0, frames: 0, scheduled: false };
window.__apiaryLive = live; // read by the browser test and the benchmark

function searchable(e) {
  if (!e._s) e._s = [e.kind, e.node, e.service, e.src_ip, e.pot, e.protocol, summary(e)].join(' ').toLowerCase();
  return e._s;
}

function matches(e) {
  if (!live.filter) return true;
  const s = searchable(e);
  return live.filter.split(/\s+/).every((w) => s.includes(w));
}

function eventRow(e, onclick) {
  return el('tr', { onclick }, el('td', { class: 'mono' }, fmtTime(e.time)), el('td', null, e.node), el('td', null, el('span', { class: 'kind k-' + String(e.kind).split('.')[0] }, e.kind)), el('td', null, e.service ?? ''), el('td', { class: 'mono' }, source(e)), el('td', { class: 'what' }, clip(summary(e), 160)));
}

function liveRow(e) {
  return eventRow(e, e.session ? () => { location.hash = '#/session/' + e.session; } : null);
}

function renderLiveAll() {
  const body = $('live-rows');
  clear(body);
  const rows = [];
  for (let i = live.ring.length - 1; i >= 0 && rows.length < LIVE_ROWS; i--) if (matches(live.ring[i])) rows.push(liveRow(live.ring[i]));
  body.append(...rows);
}

function frame() {
  live.scheduled = false;
  live.frames++;
  const batch = live.queue; live.queue = [];
  if (!batch.length) return;
  const newest = batch[batch.length - 1];
  live.lagMs = Math.max(0, Date.now() - new Date(newest.time).getTime());
  for (const e of batch) live.ring.push(e);
  if (live.ring.length > LIVE_KEEP) live.ring.splice(0, live.ring.length - LIVE_KEEP);
  state.liveTotal += batch.length;
  $('ov-live').textContent = fmtNum(state.liveTotal);
  if (state.page !== 'live' || live.paused) return;
  const shown = [];
  for (let i = batch.length - 1; i >= 0 && shown.length < LIVE_ROWS; i--) if (matches(batch[i])) shown.push(liveRow(batch[i]));
  const body = $('live-rows');
  if (shown.length >= LIVE_ROWS) { clear(body); body.append(...shown); }
  else if (shown.length) {
    body.prepend(...shown);
    while (body.childElementCount > LIVE_ROWS) body.lastElementChild.remove();
  }
}

function updateStatus() {
  live.rate = live.rateCount; live.rateCount = 0;
  const conn = state.live && state.live.readyState === 1 ? 'connected' : 'reconnecting…';
  $('live-status').textContent = `${conn} · ${fmtNum(live.received)} events received · ${fmtNum(live.rate)}/s · lag ${live.lagMs} ms${live.lagged ? ' · ' + fmtNum(live.lagged) + ' skipped (too slow)' : ''}${live.paused ? ' · paused' : ''}`;
}
setInterval(updateStatus, 1000);

function startLive() {
  if (state.live) return;
  const es = new EventSource('/api/v1/stream');
  state.live = es;
  es.addEventListener('events', (m) => {
    const batch = JSON.parse(m.data);
    live.received += batch.length; live.rateCount += batch.length;
    for (const e of batch) live.queue.push(e);
    if (!live.scheduled) { live.scheduled = true; requestAnimationFrame(frame); }
  });
  es.addEventListener('lagged', (m) => { live.lagged += JSON.parse(m.data).missed || 0; });
  es.addEventListener('hello', updateStatus);
  es.onerror = () => updateStatus();
}
function stopLive() { if (state.live) { state.live.close(); state.live = null; } }

$('live-filter').addEventListener('input', (ev) => { live.filter = ev.target.value.trim().toLowerCase(); renderLiveAll(); });
$('live-pause').addEventListener('click', (ev) => { live.paused = !live.paused; ev.target.textContent = live.paused ? 'Resume' : 'Pause'; if (!live.paused) renderLiveAll(); updateStatus(); });
$('live-clear').addEventListener('click', () => { live.ring = []; renderLiveAll(); });

// ---------------------------------------------------------------------------------------------
// Search.

let searchNext = null;
let searchParams = null;

function showDetail(e) {
  $('detail-json').textContent = JSON.stringify(e, null, 2);
  const a = $('detail-session');
  a.hidden = !e.session;
  if (e.session) a.href = '#/session/' + e.session;
}

async function runSearch(more) {
  const p = new URLSearchParams(searchParams);
  if (more && searchNext) p.set('before', searchNext);
  $('search-status').textContent = 'searching…';
  const t0 = performance.now();
  try {
    const page = await api('/events?' + p.toString());
    const body = $('search-rows');
    if (!more) { clear(body); $('detail-json').textContent = 'Select an event.'; $('detail-session').hidden = true; }
    for (const e of page.events) body.append(eventRow(e, () => showDetail(e)));
    searchNext = page.next;
    $('search-more').hidden = !page.next;
    $('search-status').textContent = `${body.childElementCount} events shown · ${Math.round(performance.now() - t0)} ms`;
  } catch (e) { $('search-status').textContent = e.message; }
}

$('search-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(ev.target)) if (String(v).trim()) p.set(k, String(v).trim());
  searchParams = p.toString();
  runSearch(false);
});
$('search-more').addEventListener('click', () => runSearch(true));

// ---------------------------------------------------------------------------------------------
// Session and terminal replay.

let tty = null;

function ttyApply(out, text) {
  // A tiny terminal: strips escape sequences, honours CR, LF and backspace.
  text = text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '').replace(/\x1b[\]P^_][^\x07\x1b]*(\x07|\x1b\\)?/g, '').replace(/\x1b./g, '');
  for (const ch of text) {
    if (ch === '\r') { const i = out.lastIndexOf('\n'); out = out.slice(0, i + 1); }
    else if (ch === '\b' || ch === '\x7f') { if (!out.endsWith('\n')) out = out.slice(0, -1); }
    else if (ch === '\n' || ch >= ' ' || ch === '\t') out += ch;
  }
  return out.length > 200000 ? out.slice(-200000) : out;
}

function ttyStop() { if (tty && tty.timer) clearTimeout(tty.timer); if (tty) tty.timer = null; $('tty-play').textContent = 'Play'; }

function ttyPlay() {
  if (!tty) return;
  if (tty.timer) { ttyStop(); return; }
  if (tty.i >= tty.frames.length) { tty.i = 0; tty.out = ''; }
  $('tty-play').textContent = 'Pause';
  const step = () => {
    const f = tty.frames[tty.i];
    if (f[1] === 'o') tty.out = ttyApply(tty.out, f[2]);
    $('tty').textContent = tty.out;
    $('tty').scrollTop = $('tty').scrollHeight;
    tty.i++;
    if (tty.i >= tty.frames.length) { ttyStop(); return; }
    const speed = Number($('tty-speed').value) || 1;
    const dt = Math.min(2, Math.max(0, tty.frames[tty.i][0] - f[0])) / speed;
    tty.timer = setTimeout(step, dt * 1000);
  };
  step();
}
$('tty-play').addEventListener('click', ttyPlay);

async function loadSession(id) {
  ttyStop();
  $('session-id').textContent = id;
  clear($('session-rows'));
  $('session-json').textContent = 'Select an event.';
  const s = await api('/sessions/' + encodeURIComponent(id));
  const t0 = s.events.length ? new Date(s.events[0].time).getTime() : 0;
  for (const e of s.events) {
    const r = eventRow(e, () => { $('session-json').textContent = JSON.stringify(e, null, 2); });
    r.children[1].textContent = String(new Date(e.time).getTime() - t0);
    $('session-rows').append(r);
  }
  $('tty-card').hidden = !s.asciicast;
  $('tty').textContent = '';
  tty = null;
  if (s.asciicast) {
    const lines = s.asciicast.split('\n').filter(Boolean);
    const frames = [];
    for (const l of lines.slice(1)) { try { frames.push(JSON.parse(l)); } catch (_) { /* skip */ } }
    tty = { frames, i: 0, out: '', timer: null };
    // Show the final screen at once; Play replays it with its timing.
    let out = '';
    for (const f of frames) if (f[1] === 'o') out = ttyApply(out, f[2]);
    $('tty').textContent = out;
    tty.i = frames.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

async function loadNodes() {
  const nodes = await api('/nodes');
  const pots = await api('/pots');
  const body = $('nodes-rows');
  clear(body);
  for (const n of nodes) {
    const count = pots.filter((p) => p.node_id === n.id).length;
    body.append(el('tr', { onclick: () => { location.hash = '#/nodes/' + n.id; } },
      el('td', null, n.id), el('td', null, n.name), el('td', null, el('span', { class: 'pill ' + (n.connected ? 'ok' : 'off') }, n.status)),
      el('td', null, n.connected ? 'yes' : 'no'), el('td', null, ago(n.last_seen)), el('td', { class: 'mono' }, n.peer ?? ''), el('td', null, count)));
  }
  if (!nodes.length) body.append(el('tr', null, el('td', { colspan: 7, class: 'muted' }, 'No nodes yet: enroll one.')));
}

let nodeId = null;

function commandText(c) {
  if (typeof c === 'string') return c;
  const [k, v] = Object.entries(c)[0] || ['', ''];
  return typeof v === 'string' ? `${k} ${v}` : k;
}

async function loadNode(id) {
  nodeId = Number(id);
  const d = await api('/nodes/' + nodeId);
  const n = d.node;
  $('node-name').textContent = `${n.name} (#${n.id})`;
  const kv = $('node-info'); clear(kv);
  for (const [k, v] of [['status', n.status], ['connected', n.connected ? 'yes' : 'no'], ['last heartbeat', `${ago(n.last_seen)} (${n.last_seen ? fmtTime(n.last_seen) : '–'})`], ['peer', n.peer ?? ''], ['reported address', `${n.address ?? ''}${n.port ? ':' + n.port : ''}`], ['type', n.node_type ?? ''], ['enrolled', fmtTime(n.created)]]) {
    kv.append(el('tr', null, el('th', null, k), el('td', null, v)));
  }
  const pots = $('node-pots'); clear(pots);
  for (const p of d.pots) pots.append(el('tr', null, el('td', null, p.pot_id), el('td', null, p.pot_type), el('td', null, el('span', { class: 'pill ' + (p.status === 'Running' ? 'ok' : 'off') }, p.status)), el('td', { class: 'what' }, p.message ?? ''), el('td', null, ago(p.updated))));
  if (!d.pots.length) pots.append(el('tr', null, el('td', { colspan: 5, class: 'muted' }, 'No pot reported yet (send GetInstalledPots).')));
  if (!$('cmd-pot').value && d.pots.length) $('cmd-pot').value = d.pots[0].pot_id;
  const cmds = $('node-cmds'); clear(cmds);
  for (const c of d.commands) cmds.append(el('tr', null, el('td', null, c.id), el('td', null, commandText(c.command)), el('td', null, el('span', { class: 'pill s-' + c.status }, c.status)), el('td', { class: 'what' }, c.result ?? ''), el('td', null, fmtTime(c.created))));
}

$('cmd-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const type = $('cmd-type').value;
  const pot = $('cmd-pot').value.trim();
  const unit = ['GetInstalledPots', 'Restart', 'UpdateConfig'].includes(type);
  const command = unit ? type : { [type]: pot };
  const out = $('cmd-result');
  out.textContent = `sending ${type}…`;
  out.className = 'result';
  try {
    let c = await api(`/nodes/${nodeId}/commands`, { method: 'POST', body: { command } });
    out.textContent = `command ${c.id}: ${c.status}…`;
    for (let i = 0; i < 12 && c.status !== 'done' && c.status !== 'failed'; i++) {
      c = await api(`/commands/${c.id}?wait=5`);
      out.textContent = `command ${c.id}: ${c.status}…`;
    }
    out.textContent = `command ${c.id} ${c.status}${c.result ? ': ' + c.result : ''}`;
    out.className = 'result s-' + c.status;
    loadNode(nodeId);
  } catch (e) { out.textContent = e.message; out.className = 'result s-failed'; }
});

// ---------------------------------------------------------------------------------------------
// Enrollment.

$('enroll-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const r = await api('/nodes', { method: 'POST', body: { name: String(f.get('name')).trim(), kind: f.get('kind') } });
    $('enroll-result').hidden = false;
    const qr = $('enroll-qr'); clear(qr);
    if (r.qr_svg) {
      // The SVG is drawn by the Core from the otpauth URI (no attacker input); parse it as SVG
      // and adopt only the <svg> element.
      const doc = new DOMParser().parseFromString(r.qr_svg, 'image/svg+xml');
      const svg = doc.documentElement;
      if (svg && svg.nodeName === 'svg') qr.append(document.importNode(svg, true));
    }
    const kv = $('enroll-kv'); clear(kv);
    for (const [k, v] of [['node', `${r.name} (#${r.node_id})`], ['TOTP secret', r.totp_secret], ['otpauth URI', r.otpauth_uri], ['one-time token', r.token]]) if (v) kv.append(el('tr', null, el('th', null, k), el('td', { class: 'mono' }, v)));
    $('enroll-cmd').textContent = `${r.node_config}\n# then run: ${r.node_command}`;
  } catch (e) { alert(e.message); }
});

// ---------------------------------------------------------------------------------------------
// Alerts.

async function loadAlerts() {
  const r = await api(`/alerts?window=${state.alertWindow}&windows=6`);
  const root = $('alerts'); clear(root);
  for (const d of r.digests) {
    const card = el('div', { class: 'card' }, el('h3', null, `${fmtTime(d.start)} – ${fmtTime(d.end).slice(11)}`, el('span', { class: 'muted' }, `  ${fmtNum(d.total)} events`)));
    if (!d.groups.length) card.append(el('p', { class: 'muted' }, 'quiet'));
    else {
      const t = el('table', { class: 'events' }, el('thead', null, el('tr', null, el('th', null, 'events'), el('th', null, 'kind'), el('th', null, 'service'), el('th', null, 'source'), el('th', null, 'first'), el('th', null, 'last'))));
      const b = el('tbody');
      for (const g of d.groups) b.append(el('tr', null, el('td', { class: 'count' }, fmtNum(g.count)), el('td', null, g.kind), el('td', null, g.service ?? ''), el('td', { class: 'mono' }, g.src_ip ?? ''), el('td', null, fmtTime(g.first).slice(11)), el('td', null, fmtTime(g.last).slice(11))));
      t.append(b);
      card.append(t);
    }
    root.append(card);
  }
}

$('alert-window').addEventListener('click', (ev) => {
  const b = ev.target.closest('button'); if (!b) return;
  state.alertWindow = b.dataset.window;
  for (const x of $('alert-window').querySelectorAll('button')) x.classList.toggle('on', x === b);
  loadAlerts();
});

boot();
