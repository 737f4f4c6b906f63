// Test doubles: a clock whose timers run when the test says, a WebSocket
// whose server side the test plays, and a fetch that answers from a table.
import type { Clock } from '../src/types.js';

/** flush lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  t = 1_800_000_000_000;
  private timers: Timer[] = [];
  private nextId = 1;

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ id, at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== h);
  }

  /** The delays of the pending timers, soonest first. */
  pending(): number[] {
    return this.timers.map((t) => t.at - this.t).sort((a, b) => a - b);
  }

  /** advance moves time forward, running every timer that comes due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await flush();
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.at);
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }

  /** runNext runs the soonest timer and returns its delay. */
  async runNext(): Promise<number> {
    const d = this.pending()[0];
    if (d === undefined) throw new Error('no timer pending');
    await this.advance(d);
    return d;
  }
}

export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  static reset(): void {
    FakeWebSocket.instances = [];
  }
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    if (!ws) throw new Error('no WebSocket was opened');
    return ws;
  }

  readonly url: string;
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly sent: Array<Record<string, unknown>> = [];
  closedByClient: { code: number | undefined; reason: string | undefined } | null = null;

  constructor(url: string) {
    this.url = url;
    FakeWebSocket.instances.push(this);
  }

  get token(): string | null {
    return new URL(this.url).searchParams.get('token');
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  /** The frames of a type the client sent. */
  sentOf(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f['type'] === type);
  }

  // Server side.

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** welcome opens the socket and sends `connected`. */
  welcome(epoch = 1000, extra: Record<string, unknown> = {}): void {
    this.open();
    this.push({
      type: 'connected',
      clientId: 'c' + FakeWebSocket.instances.length,
      user: { name: 'test', permissions: { realtime_data: true } },
      capabilities: { dataTypes: ['device_health', 'publisher_status'], maxSubscriptions: 50, version: 'test', epoch, ...extra },
    });
  }

  push(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** data pushes a data_update (or cached_data) for a key. */
  data(key: string, data: unknown, seq: number, opts: { cached?: boolean; recovered?: boolean } = {}): void {
    const [dataType, device, channel, publisherId] = key.split(':');
    const f: Record<string, unknown> = {
      type: opts.cached ? 'cached_data' : 'data_update',
      subscriptionKey: key,
      dataType,
      device,
      channel: channel ?? null,
      publisherId: publisherId ?? null,
      data,
      timestamp: new Date(1_800_000_000_000 + seq).toISOString(),
      cached: !!opts.cached,
      seq,
    };
    if (opts.recovered === false) f['recovered'] = false;
    this.push(f);
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** makeToken returns an unsigned JWT with the claims (the client never verifies). */
export function makeToken(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;
}

export type Route = (url: URL, init: RequestInit | undefined) => { status: number; body?: unknown } | 'down';

/** FakeFetch answers requests from a route function; 'down' is a network error. */
export class FakeFetch {
  readonly calls: Array<{ method: string; url: URL; auth: string | null }> = [];
  route: Route = () => 'down';

  readonly fetch = async (input: string, init?: RequestInit): Promise<Response> => {
    const url = new URL(input);
    const headers = (init?.headers ?? {}) as Record<string, string>;
    this.calls.push({ method: init?.method ?? 'GET', url, auth: headers['Authorization'] ?? null });
    const r = this.route(url, init);
    if (r === 'down') throw new TypeError('fetch failed');
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), {
      status: r.status,
      headers: { 'Content-Type': 'application/json' },
    });
  };

  paths(): string[] {
    return this.calls.map((c) => `${c.method} ${c.url.pathname}${c.url.search}`);
  }
}
