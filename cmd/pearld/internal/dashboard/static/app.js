// pearld's dashboard: every device of the fleet, live. Plain ES module; the
// client (sdk/js) is served next to it under /dashboard/client/.
import { canControl, decodeToken, getClient, parseKey } from './client/index.js';

const config = JSON.parse(document.getElementById('pearld-config')?.textContent || '{}');
const TOKEN_KEY = 'pearld.token';
const DISCOVER_EVERY_MS = 5000;

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  connection: $('connection'),
  user: $('user'),
  signout: $('signout'),
  notice: $('notice'),
  login: $('login'),
  loginForm: /** @type {HTMLFormElement} */ ($('login-form')),
  tokenInput: /** @type {HTMLTextAreaElement} */ ($('token-input')),
  empty: $('empty'),
  fleet: $('fleet'),
  stats: $('stats'),
};

// ---- token: from the URL fragment (never sent to the server), kept per tab ----

const memory = new Map();
const store = {
  get(k) {
    try { return sessionStorage.getItem(k); } catch { return memory.get(k) ?? null; }
  },
  set(k, v) {
    try { sessionStorage.setItem(k, v); } catch { memory.set(k, v); }
  },
  remove(k) {
    try { sessionStorage.removeItem(k); } catch { memory.delete(k); }
  },
};

/** takeToken moves a #token=... of the URL into sessionStorage and out of the address bar. */
function takeToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get('token');
  if (t) {
    store.set(TOKEN_KEY, t.trim());
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }
  return store.get(TOKEN_KEY);
}

function hubUrl() {
  if (config.hubUrl) return config.hubUrl;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.hostname.includes(':') && !location.hostname.startsWith('[') ? `[${location.hostname}]` : location.hostname}:${config.hubPort || 3446}${config.hubPath || '/ws/realtime'}`;
}

// ---- small DOM helpers ----

/** h creates an element with attributes (on* are listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setAttr(el, name, value) {
  if (value === null || value === undefined) el.removeAttribute(name);
  else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, String(value));
}

const byId = (a, b) => a.localeCompare(b, undefined, { numeric: true });

function formatUptime(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${hr} h`;
  if (hr > 0) return `${hr} h ${m} min`;
  return `${m} min`;
}

function formatTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleTimeString() : '';
}

const num = (v, digits, unit) => (typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(digits)}${unit}` : '–');
const pct = (v) => (typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(2)} %` : '–');

// ---- state ----

/** @type {import('./client/index.js').PearldClient} */
let client;
/** @type {Map<string, import('./client/index.js').Subscription>} */
const subs = new Map();
/** device id -> { health, channels: Map<channel, {status, quality}>, el } */
const devices = new Map();
const pending = new Set(); // "device/channel/publisher" of control calls in flight
let discoverTimer = null;
const offs = [];

function device(id) {
  let d = devices.get(id);
  if (!d) {
    d = { id, health: null, channels: new Map(), el: null };
    devices.set(id, d);
  }
  return d;
}

function channel(d, id) {
  let c = d.channels.get(id);
  if (!c) {
    c = { id, status: null, quality: null, el: null };
    d.channels.set(id, c);
  }
  return c;
}

/** want reports whether the dashboard shows a key. */
function want(k) {
  if (!k || k.publisherId !== undefined) return false;
  if (k.dataType === 'device_health') return k.channel === undefined;
  if (k.dataType === 'publisher_status') return k.channel !== undefined;
  if (k.dataType === 'stream_quality') return k.channel !== undefined && hasType('stream_quality');
  return false;
}

function hasType(t) {
  return (client?.capabilities?.dataTypes ?? []).includes(t);
}

function follow(k) {
  if (subs.has(k.key) || !want(k)) return;
  const d = device(k.device);
  const onUpdate = (u) => {
    if (k.dataType === 'device_health') d.health = u;
    else if (k.dataType === 'publisher_status') channel(d, k.channel).status = u;
    else channel(d, k.channel).quality = u;
    schedule();
  };
  subs.set(k.key, client.subscribe({ dataType: k.dataType, device: k.device, channel: k.channel }, onUpdate, (e) => notice(e.message)));
  if (k.channel !== undefined) channel(d, k.channel);
  schedule();
}

/** discover subscribes to every key the hub lists that the dashboard shows. */
async function discover() {
  if (client.state !== 'connected-live') return;
  let streams;
  try {
    streams = await client.listStreams();
  } catch {
    return; // the connection dropped: the next one discovers again
  }
  for (const key of Object.keys(streams)) follow(parseKey(key));
  // A channel with publisher_status also gets stream_quality when it exists.
  if (hasType('stream_quality')) {
    for (const d of devices.values()) for (const c of d.channels.keys()) follow(parseKey(`stream_quality:${d.id}:${c}`));
  }
  schedule();
}

// ---- rendering: one pass per animation frame, updating nodes in place ----

let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const state = client.state;
  setAttr(ui.connection, 'data-state', state);
  const labels = { 'connected-live': 'Live', 'fallback-http': 'HTTP fallback · polling', disconnected: 'Disconnected · last known state' };
  setText(ui.connection.querySelector('.label'), labels[state] ?? state);
  ui.fleet.classList.toggle('stale', state === 'disconnected');
  setAttr(ui.fleet, 'aria-busy', state === 'disconnected' ? 'true' : null);

  const ids = [...devices.keys()].sort(byId);
  ui.empty.hidden = ids.length > 0 || !client;
  ids.forEach((id, i) => {
    const d = /** @type {any} */ (devices.get(id));
    renderDevice(d);
    if (ui.fleet.children[i] !== d.el) ui.fleet.insertBefore(d.el, ui.fleet.children[i] ?? null);
  });

  const s = client.stats();
  const parts = [`${s.updates} updates`, `${s.subscriptions} subscriptions`];
  if (s.lastConnected) parts.push(`${state === 'connected-live' ? 'connected since' : 'last connected'} ${s.lastConnected.toLocaleTimeString()}`);
  if (s.latencyMs !== null) parts.push(`round trip ${s.latencyMs} ms`);
  if (s.reconnectAttempts > 0 && state !== 'connected-live') parts.push(`reconnect attempt ${s.reconnectAttempts}`);
  if (s.httpPolls > 0) parts.push(`${s.httpPolls} HTTP polls`);
  setText(ui.stats, parts.join(' · '));
}

function renderDevice(d) {
  if (!d.el) {
    const title = h('h2', { id: `dev-${d.id}` }, d.id);
    d.el = h('article', { class: 'device', 'data-device': d.id, 'aria-labelledby': `dev-${d.id}` });
    d.parts = {
      sub: h('p', { class: 'sub' }),
      badge: h('span', { class: 'badge', 'data-field': 'status' }, 'unknown'),
      cpu: h('dd', { 'data-field': 'cpu' }, '–'),
      temp: h('dd', { 'data-field': 'temp' }, '–'),
      uptime: h('dd', { 'data-field': 'uptime' }, '–'),
      error: h('p', { class: 'error-text', hidden: true }),
      channels: h('div', { class: 'channels' }),
    };
    const p = d.parts;
    d.el.append(
      h('header', {}, h('div', {}, title, p.sub), p.badge),
      h('dl', { class: 'health' },
        h('div', {}, h('dt', {}, 'CPU'), p.cpu),
        h('div', {}, h('dt', {}, 'Temperature'), p.temp),
        h('div', {}, h('dt', {}, 'Uptime'), p.uptime)),
      p.error,
      p.channels,
    );
  }
  const p = d.parts;
  const health = d.health?.data;
  if (health) {
    const sub = [health.device_name, health.device_ip, health.firmware?.product_name, health.firmware?.version && `firmware ${health.firmware.version}`];
    setText(p.sub, sub.filter(Boolean).join(' · '));
    setText(p.badge, health.status.replace('_', ' '));
    setAttr(p.badge, 'data-status', health.status);
    const sys = health.system;
    setText(p.cpu, sys ? `${sys.cpuload} %` : '–');
    p.cpu.classList.toggle('hot', !!sys?.cpuload_high);
    setText(p.temp, sys ? `${sys.cputemp} °C` : '–');
    setAttr(p.temp, 'title', sys ? `threshold ${sys.cputemp_threshold} °C` : null);
    p.temp.classList.toggle('hot', !!sys && sys.cputemp >= sys.cputemp_threshold);
    setText(p.uptime, sys ? formatUptime(sys.uptime) : '–');
    p.error.hidden = !health.error_message;
    setText(p.error, health.error_message || '');
  }
  const chans = [...d.channels.values()].filter((c) => c.status || c.quality).sort((a, b) => byId(a.id, b.id));
  chans.forEach((c, i) => {
    renderChannel(d, c);
    if (p.channels.children[i] !== c.el) p.channels.insertBefore(c.el, p.channels.children[i] ?? null);
  });
}

function renderChannel(d, c) {
  if (!c.el) {
    c.parts = {
      meta: h('span', { class: 'meta' }),
      list: h('ul', { class: 'publishers' }),
      quality: h('div', { class: 'quality', hidden: true }),
      rows: new Map(),
    };
    c.el = h('section', { class: 'channel', 'data-channel': c.id, 'aria-label': `${d.id} channel ${c.id}` },
      h('h3', {}, h('span', {}, `Channel ${c.id}`), c.parts.meta), c.parts.list, c.parts.quality);
  }
  const p = c.parts;
  const u = c.status;
  if (u) {
    setAttr(c.el, 'data-seq', u.seq ?? '');
    setAttr(c.el, 'data-source', u.source);
    setText(p.meta, `updated ${formatTime(u.timestamp)}`);
    const pubs = Array.isArray(u.data?.publishers) ? u.data.publishers : [];
    const seen = new Set();
    pubs.forEach((pub, i) => {
      const id = String(pub.id);
      seen.add(id);
      let row = p.rows.get(id);
      if (!row) {
        row = renderPublisherRow(d, c, id);
        p.rows.set(id, row);
      }
      updatePublisherRow(d, c, row, pub);
      if (p.list.children[i] !== row.el) p.list.insertBefore(row.el, p.list.children[i] ?? null);
    });
    for (const [id, row] of p.rows) if (!seen.has(id)) { row.el.remove(); p.rows.delete(id); }
  }
  renderQuality(c);
}

function renderPublisherRow(d, c, id) {
  const row = {
    el: h('li', { class: 'publisher', 'data-publisher': id }),
    name: h('span', { class: 'name' }),
    kind: h('span', { class: 'kind' }),
    state: h('span', { class: 'state', role: 'status' }),
    button: h('button', { type: 'button', 'data-action': 'start' }, 'Start'),
    desc: h('span', { class: 'desc', hidden: true }),
  };
  row.label = h('span', {}, row.name, row.kind);
  row.el.append(row.label, row.state, row.button, row.desc);
  row.button.addEventListener('click', () => control(d.id, c.id, id, row.button.getAttribute('data-action')));
  return row;
}

function updatePublisherRow(d, c, row, pub) {
  const st = pub.status ?? { state: 'unknown', started: false };
  const name = pub.name || `Publisher ${pub.id}`;
  setAttr(row.el, 'data-state', st.state);
  setText(row.name, name);
  setText(row.kind, pub.type || '');
  setText(row.state, st.state);
  setAttr(row.state, 'data-state', st.state);
  row.desc.hidden = !st.description;
  setText(row.desc, st.description || '');
  const running = st.started || st.state === 'starting' || st.state === 'started';
  const action = running ? 'stop' : 'start';
  const busy = pending.has(`${d.id}/${c.id}/${pub.id}`);
  setAttr(row.button, 'data-action', action);
  row.button.className = action === 'stop' ? 'stop' : '';
  setText(row.button, busy ? (action === 'stop' ? 'Stopping…' : 'Starting…') : action === 'stop' ? 'Stop' : 'Start');
  setAttr(row.button, 'aria-label', `${action === 'stop' ? 'Stop' : 'Start'} ${name} on ${d.id} channel ${c.id}`);
  const claims = decodeToken(client.getToken());
  const allowed = canControl(claims, d.id);
  const reachable = client.state !== 'disconnected';
  row.button.disabled = !allowed || !reachable || busy || st.is_configured === false;
  setAttr(row.button, 'title', !allowed ? 'Your token does not allow publisher control' : !reachable ? 'pearld is not reachable' : st.is_configured === false ? 'This publisher is not configured on the device' : null);
}

function renderQuality(c) {
  const q = c.quality?.data;
  const box = c.parts.quality;
  box.hidden = !q;
  if (!q) return;
  const e = q.encoder ?? {};
  const enc = [e.resolution, e.framerate && `${e.framerate} fps`, e.codec, e.video_bitrate_kbps && `${e.video_bitrate_kbps} kb/s`, e.audio_codec && `${e.audio_codec}${e.audio_bitrate_kbps ? ` ${e.audio_bitrate_kbps} kb/s` : ''}`].filter(Boolean).join(' · ');
  const rows = (q.publishers ?? []).filter((p) => ['send_rate_mbps', 'rtt_ms', 'loss_ratio', 'drop_ratio', 'retransmit_ratio'].some((k) => typeof p[k] === 'number'));
  const table = rows.length === 0 ? null : h('table', {},
    h('caption', { class: 'sr-only' }, `Stream quality of channel ${c.id}`),
    h('thead', {}, h('tr', {}, ...['Publisher', 'Send rate', 'RTT', 'Loss', 'Drop', 'Retransmit'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, ...rows.map((p) => h('tr', { 'data-publisher': p.id },
      h('td', {}, p.name || `Publisher ${p.id}`), h('td', {}, num(p.send_rate_mbps, 2, ' Mb/s')), h('td', {}, num(p.rtt_ms, 1, ' ms')),
      h('td', {}, pct(p.loss_ratio)), h('td', {}, pct(p.drop_ratio)), h('td', {}, pct(p.retransmit_ratio))))));
  box.replaceChildren(h('p', { class: 'encoder' }, h('strong', {}, 'Stream quality'), ` · ${q.streaming ? 'streaming' : 'not streaming'}${enc ? ` · ${enc}` : ''}`), ...(table ? [table] : []));
}

// ---- actions ----

async function control(deviceId, channelId, publisherId, action) {
  const key = `${deviceId}/${channelId}/${publisherId}`;
  if (pending.has(key)) return;
  pending.add(key);
  schedule();
  try {
    if (action === 'stop') await client.stopPublisher(deviceId, channelId, publisherId);
    else await client.startPublisher(deviceId, channelId, publisherId);
    notice('');
    // The outcome arrives as publisher_status updates; while polling, ask now.
    if (client.state === 'fallback-http') await subs.get(`publisher_status:${deviceId}:${channelId}`)?.refresh();
  } catch (err) {
    notice(`Could not ${action} publisher ${publisherId} of ${deviceId} channel ${channelId}: ${err instanceof Error ? err.message : err}`);
  } finally {
    pending.delete(key);
    schedule();
  }
}

function notice(text) {
  ui.notice.hidden = !text;
  setText(ui.notice, text);
}

function showUser() {
  const f = client.connectedFrame;
  const claims = decodeToken(client.getToken());
  const name = f?.user?.name || claims?.name || claims?.sub || 'unknown user';
  const may = canControl(claims) ? 'can control publishers' : 'read-only';
  setText(ui.user, `${name} · ${may}`);
  ui.user.hidden = false;
  ui.signout.hidden = false;
}

// ---- start ----

function start(token) {
  ui.login.hidden = true;
  ui.empty.hidden = false;
  client = getClient({ url: hubUrl(), ...(config.apiBase ? { apiBase: config.apiBase } : {}), token });
  offs.push(
    client.on('connected', () => {
      notice('');
      showUser();
      void discover();
    }),
    client.on('change', schedule),
    client.on('error', (e) => {
      if (e.code === 'auth') {
        notice(`pearld refused the token: ${e.message}. Paste a valid token to continue.`);
        ui.login.hidden = false;
      }
    }),
  );
  client.connect();
  showUser();
  discoverTimer = setInterval(() => void discover(), DISCOVER_EVERY_MS);
  schedule();
}

function signOut() {
  store.remove(TOKEN_KEY);
  clearInterval(discoverTimer);
  for (const off of offs.splice(0)) off();
  for (const s of subs.values()) s.unsubscribe();
  subs.clear();
  client?.close();
  location.reload();
}

ui.signout.addEventListener('click', signOut);
ui.loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = ui.tokenInput.value.trim();
  if (!t) return;
  store.set(TOKEN_KEY, t);
  ui.tokenInput.value = '';
  if (client) {
    client.setToken(t);
    ui.login.hidden = true;
    showUser();
  } else start(t);
});

const token = takeToken();
if (token) start(token);
else ui.login.hidden = false;
