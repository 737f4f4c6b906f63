import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { backoffBounds } from '../src/backoff.js';
import { PearldClient, type ClientOptions, type Update } from '../src/client.js';
import { FakeClock, FakeFetch, FakeWebSocket, flush, makeToken, type Route } from './helpers.js';

const URL_ = 'ws://hub.test:3446/ws/realtime';
const PS1 = 'publisher_status:studio-a:1';

let clock: FakeClock;
let http: FakeFetch;
let clients: PearldClient[];

function newClient(o: Partial<ClientOptions> = {}): PearldClient {
  const c = new PearldClient({
    url: URL_,
    token: 'tok',
    WebSocket: FakeWebSocket,
    fetch: http.fetch,
    clock,
    random: () => 0.5,
    pingIntervalMs: 0,
    fallback: { enabled: false },
    ...o,
  });
  clients.push(c);
  return c;
}

/** stateRoute answers the latest-state route of PS1 with a publisher state and seq. */
function stateRoute(state: () => { state: string; seq: number } | null): Route {
  return (url) => {
    if (url.pathname === '/api/device-state/devices/studio-a/channels/1/publishers/status') {
      const s = state();
      if (!s) return { status: 404, body: { error: 'Not Found', code: 'no_data', message: 'none' } };
      return {
        status: 200,
        body: { status: 'ok', device: 'studio-a', channel: '1', publishers: [], data: { publishers: [{ id: '0', status: { state: s.state } }] }, timestamp: '2026-11-25T20:31:12.345Z', seq: s.seq },
      };
    }
    return { status: 404, body: { code: 'not_found' } };
  };
}

beforeEach(() => {
  clock = new FakeClock();
  http = new FakeFetch();
  clients = [];
  FakeWebSocket.reset();
});
afterEach(() => {
  for (const c of clients) c.close();
});

describe('subscriptions', () => {
  it('subscribes each key once, however many subscribers, and releases it with the last', async () => {
    const c = newClient();
    const got: Update[] = [];
    const a = c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => got.push(u));
    await flush();
    const ws = FakeWebSocket.last();
    assert.equal(ws.token, 'tok');
    ws.welcome();
    assert.deepEqual(ws.sentOf('subscribe'), [{ type: 'subscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1' }]);

    ws.data(PS1, { n: 1 }, 101, { cached: true });
    const b = c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: '1' }, (u) => got.push(u));
    assert.equal(b.key, PS1);
    assert.equal(ws.sentOf('subscribe').length, 1, 'a second subscriber sends nothing');
    await flush();
    assert.deepEqual(got.map((u) => u.data), [{ n: 1 }, { n: 1 }], 'the second subscriber gets the latest state at once');
    assert.equal(c.stats().subscriptions, 1);

    a.unsubscribe();
    a.unsubscribe(); // twice is once
    assert.equal(ws.sentOf('unsubscribe').length, 0, 'one subscriber is left');
    ws.data(PS1, { n: 2 }, 102);
    assert.equal(got.length, 3, 'only the remaining subscriber gets the change');
    b.unsubscribe();
    assert.deepEqual(ws.sentOf('unsubscribe'), [{ type: 'unsubscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1' }]);
    assert.equal(c.stats().subscriptions, 0);
    ws.data(PS1, { n: 3 }, 103);
    assert.equal(got.length, 3, 'nothing after the last unsubscribe');
  });

  it('reports subscription errors to that subscription only', async () => {
    const c = newClient();
    const errs: string[] = [];
    const s = c.subscribe({ dataType: 'nope', device: 'studio-a' }, undefined, (e) => errs.push(e.code));
    await flush();
    const ws = FakeWebSocket.last();
    ws.welcome();
    ws.push({ type: 'error', code: 'invalid_params', message: 'unknown data type "nope"', subscriptionKey: 'nope:studio-a' });
    assert.deepEqual(errs, ['invalid_params']);
    assert.equal(s.error?.code, 'invalid_params');
  });

  it('lists streams', async () => {
    const c = newClient();
    c.connect();
    await flush();
    const ws = FakeWebSocket.last();
    await assert.rejects(c.listStreams(), /not connected/);
    ws.welcome();
    const p = c.listStreams();
    assert.equal(ws.sentOf('list_streams').length, 1);
    ws.push({ type: 'stream_list', streams: { [PS1]: { subscribers: 2 } } });
    assert.deepEqual(await p, { [PS1]: { subscribers: 2 } });
  });

  it('unpacks batch frames', async () => {
    const c = newClient({ batch: true });
    const seqs: Array<number | undefined> = [];
    c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => seqs.push(u.seq));
    await flush();
    const ws = FakeWebSocket.last();
    assert.equal(new URL(ws.url).searchParams.get('batch'), '1');
    ws.welcome();
    ws.push({ type: 'batch', events: [1, 2, 3].map((seq) => ({ type: 'data_update', subscriptionKey: PS1, data: {}, timestamp: '', cached: false, seq })) });
    assert.deepEqual(seqs, [1, 2, 3]);
  });
});

describe('reconnect', () => {
  it('backs off exponentially with jitter, and resets after a stable connection', async () => {
    const randoms = [0, 0.999, 0.5, 0.25, 0.75, 0.1];
    let i = 0;
    const c = newClient({ random: () => randoms[i++ % randoms.length] as number });
    c.connect();
    await flush();
    const delays: number[] = [];
    for (let n = 0; n < 6; n++) {
      FakeWebSocket.last().serverClose(1006);
      const before = FakeWebSocket.instances.length;
      delays.push(clock.pending()[0] as number);
      await clock.runNext();
      assert.equal(FakeWebSocket.instances.length, before + 1, 'a new connection after the delay');
    }
    delays.forEach((d, n) => {
      const [lo, hi] = backoffBounds(n);
      assert.ok(d >= lo && d <= hi, `attempt ${n}: ${d} not in [${lo}, ${hi}]`);
    });
    assert.equal(delays[0], 250);
    assert.ok((delays[1] as number) > 990 && (delays[1] as number) <= 1000);
    assert.equal(c.stats().reconnectAttempts, 6);

    // A connection that lasts resets the backoff; a short one does not.
    FakeWebSocket.last().welcome();
    await clock.advance(11_000);
    FakeWebSocket.last().serverClose(1001, 'Server shutting down');
    const [lo, hi] = backoffBounds(0);
    const d = clock.pending()[0] as number;
    assert.ok(d >= lo && d <= hi, `after a stable connection: ${d}`);
    await clock.runNext();
    FakeWebSocket.last().welcome();
    await clock.advance(1000);
    FakeWebSocket.last().serverClose(1006);
    const [lo1] = backoffBounds(1);
    assert.ok((clock.pending()[0] as number) >= lo1, 'a short connection keeps growing the delay');
  });

  it('resubscribes with since and epoch, and drops replayed duplicates', async () => {
    const c = newClient();
    const seqs: number[] = [];
    c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => seqs.push(u.seq as number));
    c.subscribe({ dataType: 'device_health', device: 'studio-a' });
    await flush();
    let ws = FakeWebSocket.last();
    ws.welcome(555);
    ws.data(PS1, {}, 10, { cached: true });
    ws.data(PS1, {}, 11);
    ws.serverClose(1001, 'Server shutting down');
    await clock.runNext();
    ws = FakeWebSocket.last();
    ws.welcome(555);
    assert.deepEqual(ws.sentOf('subscribe'), [
      { type: 'subscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1', since: 11, epoch: 555 },
      { type: 'subscribe', dataType: 'device_health', device: 'studio-a' },
    ]);
    ws.data(PS1, {}, 11); // the server replays from since: a duplicate
    ws.data(PS1, {}, 12);
    assert.deepEqual(seqs, [10, 11, 12]);
    assert.equal(c.stats().duplicates, 1);
    assert.equal(c.keyState(PS1), 'connected-live');
  });

  it('takes a recovered:false snapshot as the new state', async () => {
    const c = newClient();
    const got: Update[] = [];
    c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => got.push(u));
    await flush();
    let ws = FakeWebSocket.last();
    ws.welcome(1);
    ws.data(PS1, { v: 'old' }, 50);
    ws.serverClose(1006);
    await clock.runNext();
    ws = FakeWebSocket.last();
    ws.welcome(2); // the server restarted: a new epoch
    assert.deepEqual(ws.sentOf('subscribe')[0], { type: 'subscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1', since: 50, epoch: 1 });
    ws.data(PS1, { v: 'new' }, 40, { cached: true, recovered: false });
    const last = got[got.length - 1] as Update;
    assert.deepEqual(last.data, { v: 'new' });
    assert.equal(last.recovered, false);
    assert.equal(last.cached, true);
    assert.equal(c.stats().resyncs, 1);
    assert.equal(c.keyState(PS1), 'connected-cached');
    ws.data(PS1, { v: 'newer' }, 41);
    assert.deepEqual((got[got.length - 1] as Update).data, { v: 'newer' }, 'seq of the new epoch counts from the snapshot');
    assert.equal(c.keyState(PS1), 'connected-live');
  });

  it('drops a connection that stays silent, and one that never says connected', async () => {
    const c = newClient({ pingIntervalMs: 1000, connectTimeoutMs: 3000 });
    c.connect();
    await flush();
    const first = FakeWebSocket.last();
    await clock.advance(3000);
    assert.ok(first.closedByClient, 'connect timeout');
    await clock.runNext();
    const ws = FakeWebSocket.last();
    assert.notEqual(ws, first);
    ws.welcome();
    await clock.advance(1000);
    assert.equal(ws.sentOf('ping').length, 1);
    ws.push({ type: 'pong', timestamp: ws.sentOf('ping')[0]?.['timestamp'] });
    await clock.advance(1000);
    await clock.advance(1000);
    assert.equal(c.state, 'connected-live');
    await clock.advance(1000);
    assert.ok(ws.closedByClient, 'two silent intervals close the connection');
    assert.equal(c.stats().lastClose?.reason, 'Connection silent');
  });
});

describe('tokens', () => {
  it('refreshes the token before it expires and uses the new one', async () => {
    const now = clock.now() / 1000;
    const first = makeToken({ sub: 'u', iat: now, exp: now + 3600 });
    const second = makeToken({ sub: 'u', iat: now + 3540, exp: now + 7200 });
    let calls = 0;
    const c = newClient({ token: first, getToken: () => (calls++, second), refreshBeforeMs: 60_000 });
    c.connect();
    await flush();
    FakeWebSocket.last().welcome();
    assert.equal(FakeWebSocket.last().token, first);
    await clock.advance(3540_000 - 1);
    assert.equal(calls, 0, 'not before exp - refreshBefore');
    await clock.advance(1);
    assert.equal(calls, 1);
    assert.equal(c.getToken(), second);
    FakeWebSocket.last().serverClose(1006);
    await clock.runNext();
    assert.equal(FakeWebSocket.last().token, second, 'the next connection uses the new token');
  });

  it('asks for a token when there is none, or it is about to expire', async () => {
    const now = clock.now() / 1000;
    const fresh = makeToken({ exp: now + 3600 });
    const c = newClient({ token: makeToken({ exp: now + 10 }), getToken: async () => fresh });
    c.connect();
    await flush();
    assert.equal(FakeWebSocket.last().token, fresh);
  });

  it('gets a new token on a 1008 authentication close, and stops when it gets none', async () => {
    const tokens = ['t2', 't2'];
    let calls = 0;
    const c = newClient({ token: 't1', getToken: () => tokens[calls++] ?? null });
    c.connect();
    await flush();
    FakeWebSocket.last().serverClose(1008, 'Authentication required');
    await flush();
    assert.equal(calls, 1);
    await clock.runNext();
    assert.equal(FakeWebSocket.last().token, 't2');
    const n = FakeWebSocket.instances.length;
    FakeWebSocket.last().serverClose(1008, 'Authentication required');
    await flush();
    assert.equal(calls, 2);
    await clock.advance(120_000);
    assert.equal(FakeWebSocket.instances.length, n, 'the same token is not tried again');
    assert.equal(c.state, 'disconnected');
    c.setToken('t3');
    await flush();
    assert.equal(FakeWebSocket.last().token, 't3', 'a new token reconnects');
  });

  it('retries a connection limit close with backoff, without a new token', async () => {
    let calls = 0;
    const c = newClient({ getToken: () => (calls++, 'tok') });
    c.connect();
    await flush();
    FakeWebSocket.last().serverClose(1008, 'Connection limit exceeded');
    await clock.runNext();
    assert.equal(FakeWebSocket.instances.length, 2);
    assert.equal(calls, 0);
  });
});

describe('HTTP fallback', () => {
  it('polls REST while the WebSocket is down and switches back when it returns', async () => {
    let server: { state: string; seq: number } | null = { state: 'started', seq: 20 };
    http.route = stateRoute(() => server);
    const c = newClient({ fallback: { intervalMs: 2000 } });
    const states: string[] = [];
    c.on('state', (s) => states.push(s));
    const got: Update[] = [];
    c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => got.push(u));
    await flush();
    let ws = FakeWebSocket.last();
    ws.welcome(7);
    ws.data(PS1, { publishers: [{ id: '0', status: { state: 'stopped' } }] }, 10, { cached: true });
    assert.equal(c.state, 'connected-live');
    assert.equal(http.calls.length, 0, 'no polling while the WebSocket is up');

    ws.serverClose(1006);
    await flush();
    assert.equal(c.state, 'fallback-http');
    let last = got[got.length - 1] as Update;
    assert.equal(last.source, 'http');
    assert.equal(last.seq, 20);
    assert.equal(http.calls[0]?.auth, 'Bearer tok');
    assert.equal(c.keyState(PS1), 'fallback-http');

    // The reconnect fails; polling goes on and sees a change.
    server = { state: 'stopped', seq: 25 };
    await clock.advance(250); // the first reconnect attempt
    FakeWebSocket.last().serverClose(1006);
    await clock.advance(2000);
    last = got[got.length - 1] as Update;
    assert.equal(last.seq, 25);
    const polls = http.calls.length;
    await clock.advance(2000);
    assert.equal(got[got.length - 1], last, 'an unchanged seq is not delivered again');
    assert.ok(http.calls.length > polls);

    // The WebSocket returns: polling stops, the resume starts from the HTTP seq.
    while (FakeWebSocket.last().readyState === 3) await clock.runNext();
    ws = FakeWebSocket.last();
    ws.welcome(8);
    assert.equal(c.state, 'connected-live');
    assert.deepEqual(ws.sentOf('subscribe')[0], { type: 'subscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1', since: 25 });
    const after = http.calls.length;
    await clock.advance(10_000);
    assert.equal(http.calls.length, after, 'no polling once the WebSocket is back');
    // Disconnected until the first poll answers (a few milliseconds in a browser).
    assert.deepEqual(states, ['connected-live', 'disconnected', 'fallback-http', 'connected-live']);
  });

  it('says disconnected when REST does not answer either, and keeps the last data', async () => {
    http.route = () => 'down';
    const c = newClient({ fallback: {} });
    const sub = c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 });
    await flush();
    const ws = FakeWebSocket.last();
    ws.welcome();
    ws.data(PS1, { kept: true }, 3);
    ws.serverClose(1006);
    await flush();
    assert.equal(c.state, 'disconnected');
    assert.ok(c.stats().httpErrors >= 1);
    assert.deepEqual(sub.latest?.data, { kept: true });
  });

  it('tries the WebSocket at once when REST answers again after an outage', async () => {
    let up = false;
    http.route = stateRoute(() => (up ? { state: 'started', seq: 30 } : null));
    const base = http.route;
    http.route = (u, i) => (up ? base(u, i) : 'down');
    const c = newClient({ fallback: { intervalMs: 2000 } });
    c.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 });
    await flush();
    FakeWebSocket.last().welcome();
    FakeWebSocket.last().serverClose(1001, 'Server shutting down');
    await flush();
    assert.equal(c.state, 'disconnected');
    // Every reconnect fails for a while: the backoff grows.
    for (let i = 0; i < 5; i++) {
      await clock.advance(clock.pending().find((d) => d > 0) ?? 0);
      const ws = FakeWebSocket.last();
      if (ws.readyState !== 3 && !ws.closedByClient) ws.serverClose(1006);
    }
    const opened = FakeWebSocket.instances.length;
    up = true;
    await clock.advance(2000); // the next poll answers
    assert.equal(c.state, 'fallback-http');
    assert.equal(FakeWebSocket.instances.length, opened + 1, 'a reconnect without waiting for the backoff');
  });

  it('uses the event store for other data types', async () => {
    http.route = (url) => {
      if (url.pathname === '/api/realtime/events') {
        return { status: 200, body: [{ type: 'device_health', device: 'lobby', channel: null, publisher_id: null, data: { status: 'online' }, timestamp: 't', seq: 9 }] };
      }
      return 'down';
    };
    const c = newClient({ fallback: {} });
    const sub = c.subscribe({ dataType: 'device_health', device: 'lobby' });
    await flush();
    FakeWebSocket.last().serverClose(1006);
    await flush();
    assert.equal(http.paths()[0], 'GET /api/realtime/events?type=device_health&device=lobby&limit=1');
    assert.deepEqual(sub.latest?.data, { status: 'online' });
    assert.equal(c.state, 'fallback-http');
  });

  it('refreshes the token once when REST answers 401', async () => {
    http.route = (url, init) => {
      const auth = (init?.headers as Record<string, string>)['Authorization'];
      if (auth !== 'Bearer good') return { status: 401, body: { error: 'Authentication required', code: 'unauthenticated' } };
      return { status: 200, body: { status: 'ok', device: 'studio-a', channel: '1', action: 'start', result: {}, message: url.pathname } };
    };
    const c = newClient({ token: 'stale', getToken: () => 'good' });
    const a = await c.startPublisher('studio-a', 1, 0);
    assert.equal(a.message, '/api/devices/studio-a/channels/1/publishers/0/control/start');
    assert.deepEqual(http.calls.map((x) => x.auth), ['Bearer stale', 'Bearer good']);
    await c.stopPublishers('studio-a', '1');
    assert.equal(http.paths()[2], 'POST /api/devices/studio-a/channels/1/publishers/stop');
  });
});
