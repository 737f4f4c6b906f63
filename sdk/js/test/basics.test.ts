import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffBounds, backoffDelay } from '../src/backoff.js';
import { allowsDevice, canControl, canRead, decodeToken, globMatch, tokenExpiry } from '../src/jwt.js';
import { makeKey, normalizeKey, parseKey } from '../src/keys.js';
import { deriveApiBase, withQuery } from '../src/client.js';
import { makeToken } from './helpers.js';

describe('keys', () => {
  it('builds the keys the server builds', () => {
    assert.equal(makeKey('publisher_status', 'studio-a', 1), 'publisher_status:studio-a:1');
    assert.equal(makeKey('publisher_status', 'studio-a', '1', '0'), 'publisher_status:studio-a:1:0');
    assert.equal(makeKey('device_health', '192.168.1.100'), 'device_health:192.168.1.100');
    assert.equal(makeKey('device_health', 'studio-a', ''), 'device_health:studio-a');
    assert.equal(makeKey('x', 'd', null, 'p'), 'x:d::p');
  });
  it('treats a numeric and a string channel as one key', () => {
    assert.deepEqual(normalizeKey({ dataType: 'publisher_status', device: 'a', channel: 1 }), normalizeKey({ dataType: 'publisher_status', device: 'a', channel: '1' }));
  });
  it('refuses a spec without data type or device', () => {
    assert.throws(() => normalizeKey({ dataType: '', device: 'a' }), /dataType/);
    assert.throws(() => normalizeKey({ dataType: 't', device: ' ' }), /device/);
  });
  it('parses keys', () => {
    assert.deepEqual(parseKey('publisher_status:studio-a:1'), { dataType: 'publisher_status', device: 'studio-a', channel: '1', key: 'publisher_status:studio-a:1' });
    assert.deepEqual(parseKey('device_health:lobby'), { dataType: 'device_health', device: 'lobby', key: 'device_health:lobby' });
    assert.equal(parseKey('nocolon'), null);
  });
});

describe('tokens', () => {
  const now = Math.floor(Date.now() / 1000);
  it('decodes claims, expiry and permissions', () => {
    const t = makeToken({ sub: 'u', exp: now + 60, permissions: { realtime_data: true } });
    assert.equal(decodeToken(t)?.sub, 'u');
    assert.equal(tokenExpiry(t), (now + 60) * 1000);
    assert.equal(canRead(decodeToken(t)), true);
    assert.equal(canControl(decodeToken(t)), false);
  });
  it('returns null for what is not a JWT', () => {
    for (const bad of ['', 'abc', 'a.b', 'a.!!!.c', `x.${Buffer.from('[1]').toString('base64url')}.y`]) assert.equal(decodeToken(bad), null, bad);
    assert.equal(tokenExpiry(makeToken({ sub: 'u' })), null);
  });
  it('grants control to publisher_control or admin, within the devices claim', () => {
    const ctl = decodeToken(makeToken({ permissions: { publisher_control: true }, devices: ['studio-*', 'lobby'] }));
    assert.equal(canControl(ctl, 'studio-a'), true);
    assert.equal(canControl(ctl, 'lobby'), true);
    assert.equal(canControl(ctl, 'chapel'), false);
    assert.equal(canControl(decodeToken(makeToken({ permissions: { admin: true } })), 'chapel'), true);
    assert.equal(allowsDevice(decodeToken(makeToken({ devices: [] })), 'a'), false);
  });
  it('matches globs like path.Match', () => {
    const cases: Array<[string, string, boolean]> = [
      ['studio-*', 'studio-a', true],
      ['studio-*', 'studio', false],
      ['studio-?', 'studio-ab', false],
      ['[ab]x', 'bx', true],
      ['[^ab]x', 'cx', true],
      ['[^ab]x', 'ax', false],
      ['192.168.1.*', '192.168.1.100', true],
      ['192.168.1.*', '192x168.1.100', false],
      ['a\\*', 'a*', true],
      ['[', '[', false],
    ];
    for (const [p, n, want] of cases) assert.equal(globMatch(p, n), want, `${p} ~ ${n}`);
  });
});

describe('backoff', () => {
  it('grows exponentially up to the cap', () => {
    assert.deepEqual(backoffBounds(0), [250, 500]);
    assert.deepEqual(backoffBounds(1), [500, 1000]);
    assert.deepEqual(backoffBounds(3), [2000, 4000]);
    assert.deepEqual(backoffBounds(20), [15000, 30000]);
    assert.deepEqual(backoffBounds(2, { initial: 100, factor: 3, max: 10_000, jitter: 0 }), [900, 900]);
  });
  it('draws delays within the jitter bounds', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const [lo, hi] = backoffBounds(attempt);
      assert.equal(backoffDelay(attempt, {}, () => 0), lo);
      assert.equal(backoffDelay(attempt, {}, () => 0.999999), Math.round(hi - (hi - lo) * 0.000001));
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(attempt);
        assert.ok(d >= lo && d <= hi, `attempt ${attempt}: ${d} not in [${lo}, ${hi}]`);
      }
    }
  });
});

describe('urls', () => {
  it('derives the REST base from the WebSocket URL', () => {
    assert.equal(deriveApiBase('ws://localhost:3446/'), 'http://localhost:3446');
    assert.equal(deriveApiBase('wss://pearl.example.com/ws/realtime'), 'https://pearl.example.com');
  });
  it('puts the token and batch opt-in in the query', () => {
    assert.equal(withQuery('ws://h:1/ws?x=1', 'a.b.c', true), 'ws://h:1/ws?x=1&token=a.b.c&batch=1');
    assert.equal(withQuery('ws://h:1/?token=old', null, false), 'ws://h:1/');
  });
});
