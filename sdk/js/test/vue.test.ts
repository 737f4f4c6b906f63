import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { effectScope, nextTick, ref, type EffectScope } from 'vue';
import { closeAllClients } from '../src/shared.js';
import { configurePearld, usePublisherControlRT, useRealTimeData } from '../src/vue.js';
import { FakeClock, FakeFetch, FakeWebSocket, flush, makeToken } from './helpers.js';

const URL_ = 'ws://hub.test:3446/ws/realtime';
let clock: FakeClock;
let http: FakeFetch;
let scope: EffectScope;

function pub(id: string, state: string, started = state === 'started') {
  return { id, name: `Stream ${id}`, type: 'rtmp', status: { is_configured: true, started, state } };
}

beforeEach(() => {
  clock = new FakeClock();
  http = new FakeFetch();
  FakeWebSocket.reset();
  configurePearld({
    url: URL_,
    token: makeToken({ sub: 'op', permissions: { realtime_data: true, publisher_control: true }, devices: ['studio-*'] }),
    WebSocket: FakeWebSocket,
    fetch: http.fetch,
    clock,
    pingIntervalMs: 0,
  });
  scope = effectScope();
});
afterEach(() => {
  scope.stop();
  closeAllClients();
});

async function welcome(): Promise<FakeWebSocket> {
  await flush();
  const ws = FakeWebSocket.last();
  ws.welcome(1);
  await nextTick();
  return ws;
}

describe('useRealTimeData', () => {
  it('returns the shape dashboards use, and follows the data', async () => {
    const rt = scope.run(() => useRealTimeData('device_health', 'studio-a'))!;
    for (const k of ['data', 'isConnected', 'error', 'stats', 'refresh', 'subscriptionKey', 'lastUpdated', 'isCachedData', 'requestCachedData', 'connectionStatus']) {
      assert.ok(k in rt, `missing ${k}`);
    }
    assert.equal(rt.subscriptionKey.value, 'device_health:studio-a');
    assert.equal(rt.data.value, null);
    assert.equal(rt.isConnected.value, false);
    const ws = await welcome();
    assert.equal(rt.isConnected.value, true);
    assert.equal(rt.stats.value.connected, true);
    ws.data('device_health:studio-a', { status: 'online' }, 5, { cached: true });
    assert.deepEqual(rt.data.value, { status: 'online' });
    assert.equal(rt.isCachedData.value, true);
    assert.equal(rt.connectionStatus.value, 'connected-cached');
    ws.data('device_health:studio-a', { status: 'degraded' }, 6);
    assert.deepEqual(rt.data.value, { status: 'degraded' });
    assert.equal(rt.connectionStatus.value, 'connected-live');
    assert.ok(rt.lastUpdated.value instanceof Date);
    await rt.refresh();
    assert.deepEqual(ws.sentOf('get_cached_data'), [{ type: 'get_cached_data', dataType: 'device_health', device: 'studio-a' }]);
  });

  it('follows refs and getters: a new key replaces the old, an empty channel subscribes nothing', async () => {
    const channel = ref<string | number | ''>('');
    const device = ref('studio-a');
    const rt = scope.run(() => useRealTimeData('publisher_status', device, channel))!;
    const ws = await welcome();
    assert.equal(rt.subscriptionKey.value, '');
    assert.equal(ws.sentOf('subscribe').length, 0);
    channel.value = 1;
    await nextTick();
    assert.equal(rt.subscriptionKey.value, 'publisher_status:studio-a:1');
    assert.deepEqual(ws.sentOf('subscribe'), [{ type: 'subscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1' }]);
    ws.data('publisher_status:studio-a:1', { publishers: [] }, 1);
    assert.deepEqual(rt.data.value, { publishers: [] });
    channel.value = '2';
    await nextTick();
    assert.equal(rt.data.value, null, 'data of the old key is dropped');
    assert.deepEqual(ws.sentOf('unsubscribe'), [{ type: 'unsubscribe', dataType: 'publisher_status', device: 'studio-a', channel: '1' }]);
    assert.equal(ws.sentOf('subscribe').length, 2);
  });

  it('shares one subscription between components and releases it when the last scope stops', async () => {
    const other = effectScope();
    scope.run(() => useRealTimeData('device_health', 'lobby'));
    other.run(() => useRealTimeData('device_health', () => 'lobby'));
    const ws = await welcome();
    assert.equal(FakeWebSocket.instances.length, 1, 'one connection per page');
    assert.equal(ws.sentOf('subscribe').length, 1);
    other.stop();
    assert.equal(ws.sentOf('unsubscribe').length, 0);
    scope.stop();
    assert.equal(ws.sentOf('unsubscribe').length, 1);
  });
});

describe('usePublisherControlRT', () => {
  it('lists publishers, derives streaming, and controls the channel', async () => {
    const channel = ref<number | ''>(1);
    const pc = scope.run(() => usePublisherControlRT('studio-a', channel))!;
    for (const k of ['publishers', 'isStreaming', 'startPublishers', 'stopPublishers', 'connectionStatus']) assert.ok(k in pc, `missing ${k}`);
    assert.equal(pc.connectionStatus.value, 'disconnected');
    const ws = await welcome();
    ws.data('publisher_status:studio-a:1', { publishers: [pub('0', 'stopped'), { id: '1' }] }, 1, { cached: true });
    await nextTick();
    assert.equal(pc.connectionStatus.value, 'connected-cached');
    assert.deepEqual(pc.publishers.value.map((p) => [p.id, p.name, p.type, p.status.state]), [
      ['0', 'Stream 0', 'rtmp', 'stopped'],
      ['1', 'Publisher 1', 'unknown', 'stopped'],
    ]);
    assert.equal(pc.isStreaming.value, false);
    assert.equal(pc.canControl.value, true);

    ws.data('publisher_status:studio-a:1', { publishers: [pub('0', 'starting', false), pub('1', 'started')] }, 2);
    await nextTick();
    assert.equal(pc.streamingState.value, 'starting');
    assert.equal(pc.connectionStatus.value, 'connected-live');
    ws.data('publisher_status:studio-a:1', { publishers: [pub('0', 'started'), pub('1', 'started')] }, 3);
    await nextTick();
    assert.equal(pc.isStreaming.value, true);
    assert.equal(pc.connectionDescription.value, 'Real-time WebSocket (Live)');

    http.route = () => ({ status: 200, body: { status: 'ok', action: 'stop' } });
    assert.equal(await pc.stopPublishers(), true);
    assert.equal(http.paths().at(-1), 'POST /api/devices/studio-a/channels/1/publishers/stop');
    http.route = () => ({ status: 504, body: { error: 'Gateway Timeout', code: 'device_timeout', message: 'device studio-a did not answer' } });
    assert.equal(await pc.startPublisher('0'), false);
    assert.match(pc.error.value ?? '', /did not answer/);
    assert.equal(http.paths().at(-1), 'POST /api/devices/studio-a/channels/1/publishers/0/control/start');

    channel.value = '';
    await nextTick();
    assert.deepEqual(pc.publishers.value, []);
    assert.equal(await pc.startPublishers(), false, 'no channel, no call');
  });

  it('reports the fallback and denies control outside the token', async () => {
    http.route = (url) =>
      url.pathname.endsWith('/publishers/status')
        ? { status: 200, body: { status: 'ok', device: 'lobby', channel: '7', publishers: [], data: { publishers: [pub('0', 'started')] }, timestamp: 't', seq: 4 } }
        : 'down';
    const pc = scope.run(() => usePublisherControlRT('lobby', 7))!;
    const ws = await welcome();
    assert.equal(pc.canControl.value, false, 'the devices claim allows studio-* only');
    ws.serverClose(1006);
    await flush();
    await nextTick();
    assert.equal(pc.connectionStatus.value, 'fallback-http');
    assert.equal(pc.httpFallbackEnabled.value, true);
    assert.equal(pc.wsConnected.value, false);
    assert.equal(pc.publishers.value[0]?.status.state, 'started');
    await clock.advance(60_000);
    await nextTick();
    assert.equal(pc.connectionStatus.value, 'fallback-http');
  });
});
