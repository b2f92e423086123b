// emoflow live dashboard: plain JavaScript, no framework, no outside request.
//
// Every live number comes from one EventSource on /stream (a message per published snapshot,
// at most 4 a second); the only other requests are the rate history when the stream (re)opens
// and what the user asks for (send, look up, filters). Parts of the page are redrawn only when
// what they show changed, so focus and text selection survive the updates.
'use strict';

const RATE_SPAN_MS = 5 * 60 * 1000; // the rate chart's width in time
const BARS_SHOWN = 12; // bars before "Show all"
const BARS_MAX = 100; // "all" stops here: thousands of bars would help nobody
const WINDOW_TOP_K = 3; // a window's ranking is cut like the service's default lifetime top
const FEED_MAX = 50; // live matches kept on the page
const SUMMARY_EVERY_MS = 30000; // screen-reader summary: calm, not on every message
const STALE_AFTER_MS = 5000; // the service calls views older than this degraded too
const PALETTE = ['🔥', '❤️', '😂', '👍', '🎉', '😮', '👏', '🚀'];
const STORE = { token: 'emoflow.token', user: 'emoflow.user', window: 'emoflow.window', watch: 'emoflow.watch' };
const WINDOW_NAMES = { '10s': '10 s', '1m': '1 min', '10m': '10 min', lifetime: 'lifetime' };
const WINDOWS = Object.keys(WINDOW_NAMES);

const state = {
  window: 'lifetime',
  stream: null, // the EventSource on /stream
  retryTimer: 0,
  retryDelay: 1000,
  last: null, // the newest message
  rates: new Map(), // start_ms → events per second
  showAll: false,
  windowNote: '', // why the page fell back to lifetime, if it had to
  summaryAt: 0,
  feed: null, // { id, source, keys, received }
  shown: {}, // what each part last drew, to skip redraws that change nothing
  recentKeys: new Set(),
};

// ---------------------------------------------------------------- small helpers

const $ = (id) => document.getElementById(id);

/** Builds an element: attributes (`text` sets textContent, `on*` adds a listener), then children. */
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG. */
function svg(tag, attrs, ...children) {
  return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** True when `value` differs from what part `key` last drew (and remembers it). */
function changed(key, value) {
  const sig = JSON.stringify(value);
  if (state.shown[key] === sig) return false;
  state.shown[key] = sig;
  return true;
}

const intFmt = new Intl.NumberFormat();
const num = (n) => (Number.isFinite(n) ? intFmt.format(n) : '—');
const dec = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');

function duration(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** A time of day; with the date when it is not today (late events, old sessions). */
function clock(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** Code-point order, which is the UTF-8 byte order the service ranks ties by. */
function byCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** A message in a feedback line, with the time so a repeat still reads as new. */
function feedback(id, kind, text) {
  const p = $(id);
  p.dataset.state = kind;
  p.textContent = kind === 'ok' ? `${text} (${clock(Date.now())})` : text;
}

function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch { /* private mode: the page works without remembering */ }
}

function recall(key) {
  try { return sessionStorage.getItem(key); } catch { return null; }
}

// ---------------------------------------------------------------- API calls

/** Calls the API. Never throws: `{ok, status, data}`, and `error` (what to show) when not ok. */
async function api(method, path, body) {
  const headers = {};
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const token = $('send-token').value.trim();
  if (token && method !== 'GET') headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, error: 'The service cannot be reached.' };
  }
  const text = await res.text().catch(() => '');
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (res.ok) return { ok: true, status: res.status, data };
  const error = (data && typeof data === 'object' && data.error) || `${res.status} ${res.statusText}`;
  return { ok: false, status: res.status, data, error };
}

// ---------------------------------------------------------------- the live stream

function streamUrl() {
  return state.window === 'lifetime' ? '/stream' : `/stream?window=${encodeURIComponent(state.window)}`;
}

function setConn(kind, text) {
  const pill = $('conn');
  if (pill.dataset.state === kind && pill.textContent === text) return;
  pill.dataset.state = kind;
  pill.textContent = text;
}

/** (Re)opens /stream for the chosen window. */
function connect() {
  clearTimeout(state.retryTimer);
  if (state.stream) state.stream.close();
  const es = new EventSource(streamUrl());
  state.stream = es;
  setConn('connecting', state.last ? 'Reconnecting…' : 'Connecting…');
  es.onopen = () => {
    state.retryDelay = 1000;
    setConn('live', 'Live');
    loadRates(); // the seconds missed while away; each message then brings the newest ten
  };
  es.onmessage = (ev) => {
    if (es !== state.stream) return;
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    onUpdate(msg);
  };
  es.onerror = () => {
    if (es !== state.stream) return;
    if (es.readyState !== EventSource.CLOSED) {
      setConn('connecting', 'Reconnecting…'); // the browser retries by itself
      return;
    }
    // Refused (an error status): the browser gives up, so retry here, backing off.
    setConn('offline', 'Offline, retrying');
    explainRefusal();
    state.retryTimer = setTimeout(connect, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, 30000);
  };
}

/** A refused windowed stream is most likely a width this service cannot serve: say so. */
async function explainRefusal() {
  if (state.window === 'lifetime') return;
  const r = await api('GET', `/counts?last=${encodeURIComponent(state.window)}`);
  if (r.ok || r.status !== 400) return;
  const asked = state.window;
  selectWindow('lifetime', false); // the retry already scheduled opens the lifetime stream
  state.windowNote = ` (the ${asked} window is not available here: ${r.error})`;
}

function onUpdate(msg) {
  state.last = msg;
  mergeRates(msg.rates);
  renderKpis(msg);
  renderProblems(msg.problems || []);
  renderWindow(msg);
  renderRecent(msg.recent || []);
  renderSessions(msg.sessions || {});
  renderDeadLetters(msg);
  renderRates();
  renderAge();
  summarise(msg);
}

// ---------------------------------------------------------------- key numbers

function renderKpis(msg) {
  const total = $('total');
  total.textContent = num(msg.total);
  total.dataset.value = msg.total;
  total.dataset.asOf = msg.as_of; // tests compare this pair with /stats at the same as_of
  const types = Object.entries(msg.event_types || {}).sort((a, b) => b[1] - a[1]);
  $('types').textContent = types.slice(0, 4).map(([t, n]) => `${t} ${num(n)}`).join(' · ');
  $('eps').textContent = num(msg.events_per_second);
  $('eps').dataset.value = msg.events_per_second;
  $('lag').textContent = num(msg.lag);
  $('lag').dataset.value = msg.lag;
  const status = $('status');
  status.dataset.status = msg.status;
  status.textContent = msg.status === 'ok' ? 'OK' : msg.status === 'degraded' ? 'Degraded' : String(msg.status);
  const subs = msg.subscribers && msg.subscribers.subscribers;
  $('subscribers').textContent = Number.isFinite(subs) ? `${num(subs)} live subscriber${subs === 1 ? '' : 's'}` : '';
}

/** The age of the numbers shown, ticking between messages. */
function renderAge() {
  const age = $('age');
  if (!state.last) return;
  const ms = Math.max(0, Date.now() - state.last.as_of);
  age.textContent = ms < 1000 ? `${(ms / 1000).toFixed(1)} s` : duration(ms);
  age.dataset.value = ms;
  age.dataset.stale = String(ms > STALE_AFTER_MS);
  $('as-of').textContent = `as of ${clock(state.last.as_of)}`;
}

function renderProblems(problems) {
  if (!changed('problems', problems)) return;
  $('problems').hidden = problems.length === 0;
  $('problem-list').replaceChildren(...problems.map((p) => h('li', { text: p })));
}

/** What a screen reader hears: a short summary every half minute, not every message. */
function summarise(msg) {
  const now = Date.now();
  if (now - state.summaryAt < SUMMARY_EVERY_MS) return;
  state.summaryAt = now;
  $('live-summary').textContent =
    `${num(msg.total)} events in all, ${num(msg.events_per_second)} per second, status ${msg.status}.`;
}

// ---------------------------------------------------------------- rate chart

/** Adds rate points; a second's count only grows as the views advance, so keep the larger. */
function mergeRates(points) {
  for (const p of points || []) {
    const before = state.rates.get(p.start_ms);
    state.rates.set(p.start_ms, before === undefined ? p.per_sec : Math.max(before, p.per_sec));
  }
  const newest = Math.max(...state.rates.keys());
  for (const t of state.rates.keys()) if (t <= newest - RATE_SPAN_MS) state.rates.delete(t);
}

async function loadRates() {
  const r = await api('GET', '/rates?step=1s&last=5m');
  if (!r.ok) return;
  mergeRates(r.data.points);
  renderRates();
}

/** A round number at least `v`, for the chart's top line. */
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((n) => n >= v);
}

function renderRates() {
  const box = $('rate-chart');
  const w = box.clientWidth;
  const ht = box.clientHeight;
  if (!w || !ht) return;
  // The newest second is still filling: drawn, it would look like a drop at "now".
  const pts = [...state.rates.entries()].sort((a, b) => a[0] - b[0]).slice(0, -1);
  if (!changed('rates', [w, ht, pts])) return;
  const pad = { l: 44, r: 10, t: 10, b: 22 };
  const end = pts.length ? pts[pts.length - 1][0] : Date.now();
  const start = end - RATE_SPAN_MS + 1000;
  const peak = Math.max(0, ...pts.map((p) => p[1]));
  const top = niceCeil(Math.max(10, peak)); // an idle service gets a 0–10 scale, not 0–1
  const x = (t) => pad.l + ((t - start) / (end - start)) * (w - pad.l - pad.r);
  const y = (v) => ht - pad.b - (v / top) * (ht - pad.t - pad.b);
  const parts = [];
  for (const v of [0, top / 2, top]) {
    parts.push(svg('line', { className: 'gridline', x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v) }));
    parts.push(svg('text', { className: 'axis', x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', text: num(v) }));
  }
  const every = w < 480 ? 2 : 1; // minutes between time labels: they must not overlap
  for (let m = 5; m >= 0; m--) {
    if (m % every) continue;
    const label = m === 0 ? 'now' : `−${m} min`;
    const anchor = m === 5 ? 'start' : m === 0 ? 'end' : 'middle';
    parts.push(svg('text', { className: 'axis', x: x(end - m * 60000), y: ht - 4, 'text-anchor': anchor, text: label }));
  }
  if (peak > 0) {
    const line = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' L');
    const first = x(pts[0][0]).toFixed(1);
    const last = x(end).toFixed(1);
    parts.push(svg('path', { className: 'area', d: `M${first},${y(0)} L${line} L${last},${y(0)} Z` }));
    parts.push(svg('path', { className: 'line', d: `M${line}` }));
  } else {
    const quiet = state.last && state.last.total > 0 ? 'No events in the last 5 minutes' : 'No events yet';
    parts.push(svg('text', { className: 'nodata', x: (w + pad.l) / 2, y: ht * 0.38, 'text-anchor': 'middle', text: quiet }));
  }
  box.replaceChildren(svg('svg', { viewBox: `0 0 ${w} ${ht}`, 'aria-hidden': 'true', focusable: 'false' }, parts));
  const now = pts.length ? pts[pts.length - 1][1] : 0;
  const mean = pts.length ? pts.reduce((s, p) => s + p[1], 0) / pts.length : 0;
  box.setAttribute('aria-label', `Events per second over the last 5 minutes: now ${num(now)}, peak ${num(peak)}.`);
  $('rate-meta').textContent = peak > 0 ? `peak ${num(peak)}/s · mean ${dec(mean)}/s` : '';
}

// ---------------------------------------------------------------- counts and top, per window

function selectWindow(value, reconnect = true) {
  if (!WINDOWS.includes(value)) value = 'lifetime';
  state.window = value;
  state.windowNote = '';
  $(`win-${value}`).checked = true;
  store(STORE.window, value === 'lifetime' ? null : value);
  state.shown.top = state.shown.counts = undefined;
  if (reconnect) connect();
}

/** The counts, ranking and total of the chosen window in `msg` (lifetime: the top-level ones). */
function windowOf(msg) {
  if (state.window === 'lifetime') return { counts: msg.counts || {}, top: msg.top || [], total: msg.total };
  const w = msg.window;
  if (!w) return { counts: {}, top: [], total: 0, empty: true };
  return { ...w, top: (w.top || []).filter((e) => e.rank <= WINDOW_TOP_K) };
}

function renderWindow(msg) {
  const win = windowOf(msg);
  // Which window the numbers shown are of (set here, not on the click: until the new stream's
  // first message the old numbers stay).
  for (const id of ['window-info', 'top', 'counts']) $(id).dataset.window = state.window;
  const info = $('window-info');
  if (state.window === 'lifetime') info.textContent = `Every event since the start: ${num(win.total)}${state.windowNote}`;
  else if (win.empty) info.textContent = 'No events in this window yet.';
  else info.textContent = `Event time ${clock(win.start_ms)} to ${clock(win.end_ms)} (last ${WINDOW_NAMES[state.window]}): ${num(win.total)} events`;
  renderTop(win.top, win.total);
  renderBars(win.counts);
  $('counts').dataset.asOf = msg.as_of;
}

function renderTop(top, total) {
  if (!changed('top', top)) return;
  const perRank = new Map();
  for (const e of top) perRank.set(e.rank, (perRank.get(e.rank) || 0) + 1);
  const items = top.map((e) => {
    const tied = perRank.get(e.rank) > 1;
    const share = total > 0 ? `${Math.round((100 * e.count) / total)}% of events` : '';
    return h('li', { 'data-top-emoji': e.emoji, 'data-rank': e.rank, 'data-count': e.count, 'data-tied': tied },
      h('span', { className: 'rank', 'aria-hidden': 'true', text: tied ? `=${e.rank}` : String(e.rank) }),
      h('span', { className: 'visually-hidden', text: tied ? `tied for rank ${e.rank}:` : `rank ${e.rank}:` }),
      h('span', { className: 'glyph emoji', text: e.emoji }),
      h('span', { className: 'label', text: share }),
      h('span', { className: 'num', text: num(e.count) }));
  });
  $('top').replaceChildren(...(items.length ? items : [h('li', { className: 'empty', text: 'No events yet.' })]));
}

function renderBars(counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || byCodePoint(a[0], b[0]));
  const limit = state.showAll ? BARS_MAX : BARS_SHOWN;
  const shown = entries.slice(0, limit);
  const more = $('counts-more');
  more.hidden = entries.length <= BARS_SHOWN;
  more.textContent = state.showAll ? 'Show fewer' : `Show all ${num(entries.length)}`;
  more.setAttribute('aria-expanded', String(state.showAll));
  if (!changed('counts', shown)) return;
  const max = shown.length ? shown[0][1] : 1;
  const rows = shown.map(([emoji, n]) =>
    h('li', { 'data-count-emoji': emoji, 'data-count': n },
      h('span', { className: 'glyph emoji', title: emoji, text: emoji }),
      svg('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', 'aria-hidden': 'true', focusable: 'false' },
        svg('rect', { className: 'track', width: 100, height: 10, rx: 2 }),
        svg('rect', { className: 'fill', width: Math.max(0.5, (100 * n) / max).toFixed(2), height: 10, rx: 2 })),
      h('span', { className: 'num', text: num(n) })));
  $('counts').replaceChildren(...(rows.length ? rows : [h('li', { className: 'empty', text: 'No emoji reactions yet.' })]));
}

// ---------------------------------------------------------------- events, sessions, dead letters

const eventKey = (e) => `${e.partition}:${e.offset}`;

/** One event as a list item (the last events, and a filter's matches). */
function eventItem(e, fresh) {
  const what = [e.event_type, e.tier, e.amount !== undefined ? `amount ${e.amount}` : null].filter(Boolean).join(' · ');
  return h('li', { className: fresh ? 'fresh' : null, 'data-partition': e.partition, 'data-offset': e.offset, 'data-user': e.user_id, 'data-emoji-shown': e.emoji },
    e.emoji
      ? h('span', { className: 'glyph emoji', text: e.emoji })
      : h('span', { className: 'badge', 'aria-hidden': 'true', text: (e.event_type || '?').slice(0, 1) }),
    h('span', { className: 'who', text: e.user_id }),
    h('span', { className: 'when', text: clock(e.ts) }),
    h('span', { className: 'what', text: what }),
    h('span', { className: 'where', title: 'partition · offset', text: `p${e.partition} · ${e.offset}` }));
}

function renderRecent(recent) {
  if (!changed('recent', recent)) return;
  const before = state.recentKeys;
  // New events flash only on a quiet stream, where one is worth noticing (and not on the first
  // draw): under load every row is new on every message.
  const fresh = recent.filter((e) => !before.has(eventKey(e))).length;
  const flash = before.size > 0 && fresh <= 3;
  const items = recent.map((e) => eventItem(e, flash && !before.has(eventKey(e))));
  state.recentKeys = new Set(recent.map(eventKey));
  $('recent').replaceChildren(...items);
  $('recent-empty').hidden = recent.length > 0;
}

function renderSessions(s) {
  if (!changed('sessions', s)) return;
  $('s-users').textContent = num(s.users);
  $('s-sessions').textContent = num(s.sessions);
  $('s-active').textContent = num(s.active);
  // Means over no session are not 0: say there is nothing to average.
  const any = s.sessions > 0;
  $('s-duration').textContent = any ? duration(s.mean_duration_ms) : '—';
  $('s-events').textContent = any ? dec(s.mean_events) : '—';
  $('s-rate').textContent = any ? `${dec(s.mean_rate_per_min)}/min` : '—';
}

function renderDeadLetters(msg) {
  const dead = msg.dead_letters || { total: 0, items: [] };
  if (!changed('dead', [dead, msg.rejected])) return;
  $('dead-total').textContent = num(dead.total);
  $('dead-total').dataset.value = dead.total;
  const reasons = Object.entries(msg.rejected || {}).sort((a, b) => b[1] - a[1]);
  $('dead-reasons').replaceChildren(...reasons.map(([r, n]) => h('li', { 'data-reason': r, 'data-count': n, text: `${r}: ${num(n)}` })));
  $('dead-items').replaceChildren(...dead.items.map((d) =>
    h('li', { 'data-partition': d.partition, 'data-offset': d.offset },
      h('div', { className: 'head' }, h('span', { text: d.reason }), h('span', { className: 'where', text: `p${d.partition} · ${d.offset}` })),
      d.detail ? h('p', { className: 'detail', title: d.detail, text: d.detail }) : null,
      h('code', { title: String(d.payload ?? ''), text: String(d.payload ?? '').slice(0, 300) }))));
  $('dead-empty').hidden = dead.items.length > 0;
  $('dead-empty').textContent = dead.total > 0 ? 'None kept (older than the retention).' : 'Nothing rejected so far.';
  $('dead-newest').hidden = dead.items.length === 0;
}

// ---------------------------------------------------------------- sending events

async function sendEmoji(emoji) {
  const userInput = $('send-user');
  const user = userInput.value.trim();
  userInput.setAttribute('aria-invalid', String(!user));
  if (!user) {
    feedback('send-feedback', 'error', 'Enter a user id first.');
    userInput.focus();
    return;
  }
  if (!emoji) {
    $('send-emoji').setAttribute('aria-invalid', 'true');
    feedback('send-feedback', 'error', 'Enter an emoji to send.');
    $('send-emoji').focus();
    return;
  }
  $('send-emoji').removeAttribute('aria-invalid');
  store(STORE.user, user);
  const r = await api('POST', '/emoji', { user_id: user, emoji });
  if (r.ok) feedback('send-feedback', 'ok', `Sent ${emoji} as ${user}: accepted`);
  else feedback('send-feedback', 'error', r.error);
}

function setUpSending() {
  $('emoji-buttons').replaceChildren(...PALETTE.map((e) =>
    h('button', { type: 'button', 'data-emoji': e, 'aria-label': `Send ${e}`, text: e, onclick: () => sendEmoji(e) })));
  const user = $('send-user');
  user.value = recall(STORE.user) || `web-${crypto.getRandomValues(new Uint16Array(1))[0].toString(16)}`;
  const token = $('send-token');
  token.value = recall(STORE.token) || '';
  token.addEventListener('change', () => store(STORE.token, token.value.trim()));
  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendEmoji($('send-emoji').value.trim());
  });
}

// ---------------------------------------------------------------- user lookup

async function lookUp(ev) {
  ev.preventDefault();
  const input = $('lookup-user');
  const out = $('lookup-result');
  const id = input.value.trim();
  input.setAttribute('aria-invalid', String(!id));
  if (!id) {
    out.replaceChildren(h('p', { className: 'error', text: 'Enter a user id.' }));
    return;
  }
  out.replaceChildren(h('p', { text: 'Looking up…' }));
  const r = await api('GET', `/sessions/${encodeURIComponent(id)}`);
  out.dataset.user = id;
  if (!r.ok) {
    out.dataset.sessions = '';
    out.replaceChildren(h('p', { className: 'error', text: r.error }));
    return;
  }
  const sessions = r.data.sessions || [];
  out.dataset.sessions = sessions.length;
  const rows = sessions.slice(0, 10).map((s) => h('tr', {},
    h('td', { text: clock(s.start_ms) }), h('td', { text: num(s.events) }),
    h('td', { text: duration(s.duration_ms) }), h('td', { text: dec(s.rate_per_min) })));
  const more = sessions.length > 10 ? ` (newest 10 shown)` : '';
  out.replaceChildren(h('table', {},
    h('caption', { text: `${id}: ${num(sessions.length)} session${sessions.length === 1 ? '' : 's'}${more}` }),
    h('thead', {}, h('tr', {}, ['Started', 'Events', 'Duration', 'Per min'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows)));
}

// ---------------------------------------------------------------- filters

const LIST_FIELDS = [['emojis', 'filter-emojis'], ['event_types', 'filter-event-types'], ['user_ids', 'filter-user-ids'], ['tiers', 'filter-tiers']];

function describeFilter(f) {
  const parts = LIST_FIELDS.filter(([k]) => f[k]).map(([k]) => `${k.replace('_', ' ')}: ${f[k].join(', ')}`);
  if (f.min_amount !== undefined || f.max_amount !== undefined) {
    parts.push(`amount ${f.min_amount ?? '−∞'} to ${f.max_amount ?? '∞'}`);
  }
  return parts.length ? parts.join(' · ') : 'every event';
}

async function loadFilters() {
  const r = await api('GET', '/filters');
  if (!r.ok) {
    feedback('filter-feedback', 'error', r.error);
    return;
  }
  const filters = r.data.filters || [];
  const watching = state.feed && state.feed.id;
  $('filters').replaceChildren(...filters.map((f) =>
    h('li', { 'data-filter-id': f.id, 'aria-current': f.id === watching ? 'true' : null },
      h('span', { className: 'fid', text: f.name ? `${f.name} (${f.id})` : f.id }),
      h('span', { className: 'spec', text: describeFilter(f) }),
      h('span', { className: 'buttons' },
        h('button', { type: 'button', className: 'small', 'data-action': 'watch', 'aria-pressed': String(f.id === watching), 'aria-label': `Watch filter ${f.id}`, text: 'Watch', onclick: () => watchFilter(f.id) }),
        h('button', { type: 'button', className: 'small danger', 'data-action': 'delete', 'aria-label': `Delete filter ${f.id}`, text: 'Delete', onclick: () => deleteFilter(f.id) })))));
  $('filters-empty').hidden = filters.length > 0;
  $('filters-count').textContent = filters.length ? `(${num(filters.length)})` : '';
  return filters;
}

/** The filter form as a request body, or an error naming the field at fault. */
function filterBody() {
  const body = {};
  const id = $('filter-id').value.trim();
  if (id) body.id = id;
  for (const [key, input] of LIST_FIELDS) {
    const list = $(input).value.split(',').map((s) => s.trim()).filter(Boolean);
    if (list.length) body[key] = list;
  }
  for (const key of ['min_amount', 'max_amount']) {
    const input = $(`filter-${key.replace('_', '-')}`);
    const text = input.value.trim();
    input.removeAttribute('aria-invalid');
    if (!text) continue;
    const n = Number(text);
    if (!Number.isFinite(n)) {
      input.setAttribute('aria-invalid', 'true');
      return { error: `${key.replace('_', ' ')} must be a number`, input };
    }
    body[key] = n;
  }
  return { body };
}

async function createFilter(ev) {
  ev.preventDefault();
  const { body, error, input } = filterBody();
  if (error) {
    feedback('filter-feedback', 'error', error);
    input.focus();
    return;
  }
  const button = $('filter-submit');
  button.disabled = true; // creation waits for the back-fill: up to seconds
  feedback('filter-feedback', 'pending', 'Creating the filter…');
  const r = await api('POST', '/filters', body);
  button.disabled = false;
  if (!r.ok) {
    feedback('filter-feedback', 'error', r.error);
    return;
  }
  // The service answers after at most 10 s even when the back-fill of the history goes on.
  const backfill = r.data.backfill_done === false ? '; its count of past matches is still being filled in' : '';
  feedback('filter-feedback', 'ok', `Created filter ${r.data.id}; new matches appear live${backfill}`);
  $('filter-form').reset();
  watchFilter(r.data.id);
  await loadFilters();
}

async function deleteFilter(id) {
  const r = await api('DELETE', `/filters/${encodeURIComponent(id)}`);
  if (!r.ok) {
    feedback('filter-feedback', 'error', r.error);
    return;
  }
  feedback('filter-feedback', 'ok', `Deleted filter ${id}`);
  if (state.feed && state.feed.id === id) stopFeed('closed', `Filter ${id} was deleted.`);
  await loadFilters();
  $('filter-id').focus(); // the button that had focus is gone
}

function feedStatus(kind, text) {
  const p = $('feed-status');
  p.dataset.state = kind;
  p.textContent = text;
}

function stopFeed(kind, text) {
  if (state.feed && state.feed.source) state.feed.source.close();
  if (state.feed) state.feed.source = null;
  if (kind) feedStatus(kind, text);
}

/** Adds a match to the feed, newest on top; a match already shown is skipped. */
function addMatch(feed, e, position) {
  const key = eventKey(e);
  if (feed.keys.has(key)) return;
  feed.keys.add(key);
  const list = $('filter-feed');
  const item = eventItem(e, position === 'top');
  if (position === 'top') list.prepend(item);
  else list.append(item);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

/** Shows filter `id`'s newest matches, then its live stream (which resumes by itself). */
async function watchFilter(id) {
  stopFeed();
  const feed = { id, source: null, keys: new Set(), received: 0, count: null };
  state.feed = feed;
  store(STORE.watch, id);
  const list = $('filter-feed');
  list.replaceChildren();
  list.dataset.filter = id;
  list.dataset.received = '0';
  $('feed-status').dataset.filter = id;
  for (const li of document.querySelectorAll('#filters li')) {
    const on = li.dataset.filterId === id;
    li.setAttribute('aria-current', String(on));
    li.querySelector('[data-action="watch"]').setAttribute('aria-pressed', String(on));
  }
  feedStatus('connecting', `Connecting to filter ${id}…`);
  const source = new EventSource(`/filters/${encodeURIComponent(id)}/stream`);
  feed.source = source;
  const live = () => {
    const count = feed.count === null ? '' : `${num(feed.count)} in the retained history, `;
    feedStatus('live', `Watching ${id}: ${count}${num(feed.received)} new since.`);
  };
  source.onopen = live;
  source.onmessage = (ev) => {
    if (state.feed !== feed) return;
    try { addMatch(feed, JSON.parse(ev.data), 'top'); } catch { return; }
    feed.received += 1;
    list.dataset.received = String(feed.received);
    live();
  };
  source.addEventListener('reset', () => feedStatus('live', `Watching ${id}: the log dropped some matches before they were sent; going on.`));
  source.addEventListener('closed', (ev) => {
    let reason = 'the service ended the feed';
    try { reason = JSON.parse(ev.data).reason || reason; } catch { /* keep the default */ }
    stopFeed('closed', `Feed of ${id} closed: ${reason}.`);
  });
  source.onerror = () => {
    if (state.feed !== feed) return;
    if (source.readyState === EventSource.CLOSED) stopFeed('error', `The feed of ${id} was refused (was the filter deleted?).`);
    else feedStatus('connecting', `Reconnecting to filter ${id}…`);
  };
  // The newest matches already found (back-fill included), below whatever arrives live.
  const r = await api('GET', `/filters/${encodeURIComponent(id)}/matches?limit=20`);
  if (state.feed !== feed || !r.ok) return;
  feed.count = r.data.count;
  for (const e of r.data.recent || []) addMatch(feed, e, 'bottom');
  if (source.readyState === EventSource.OPEN) live();
}

// ---------------------------------------------------------------- start

function start() {
  setUpSending();
  $('lookup-form').addEventListener('submit', lookUp);
  $('filter-form').addEventListener('submit', createFilter);
  for (const input of document.querySelectorAll('#window-picker input')) {
    input.addEventListener('change', () => selectWindow(input.value));
  }
  $('counts-more').addEventListener('click', () => {
    state.showAll = !state.showAll;
    if (state.last) renderWindow(state.last);
  });
  new ResizeObserver(() => renderRates()).observe($('rate-chart'));
  setInterval(renderAge, 250);
  selectWindow(recall(STORE.window) || 'lifetime', false);
  renderRates();
  connect();
  loadFilters().then((filters) => {
    const watch = recall(STORE.watch);
    if (filters && filters.some((f) => f.id === watch)) watchFilter(watch);
  });
}

start();
