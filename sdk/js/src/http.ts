import type { Key } from './keys.js';

/** An answer of the REST API that is not 2xx, or a request that got no answer. */
export class PearldHTTPError extends Error {
  /** HTTP status; 0 when the server could not be reached or did not answer in time. */
  readonly status: number;
  /** The API's stable error code (`unauthenticated`, `forbidden`, `no_data`, `device_timeout`, ...), or `network`. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'PearldHTTPError';
    this.status = status;
    this.code = code;
  }
}

/** The body of GET /api/device-state/devices/{d}/channels/{c}/publishers/status. */
export interface PublisherStateAnswer {
  status: string;
  device: string;
  channel: string;
  publishers: unknown[];
  data: unknown;
  timestamp: string;
  seq: number;
}

/** One event of GET /api/realtime/events. */
export interface StoredEvent {
  type: string;
  device: string;
  channel: string | null;
  publisher_id: string | null;
  data: unknown;
  timestamp: string;
  changeHash?: string;
  seq: number;
}

/** The body of a control call the device accepted. */
export interface ControlAnswer {
  status: string;
  device: string;
  channel: string;
  publisher?: string;
  action: 'start' | 'stop';
  result: unknown;
  message: string;
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** A snapshot of one key's state, read over HTTP. */
export interface HTTPSnapshot {
  data: unknown;
  timestamp: string;
  seq: number;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/**
 * RestClient calls pearld's REST API with a bearer token. It is what the
 * WebSocket client falls back to, and what control calls use.
 */
export class RestClient {
  constructor(
    private readonly base: string,
    private readonly fetchImpl: FetchLike,
    private readonly timeoutMs: number,
  ) {}

  /** request sends one call and decodes its JSON answer, throwing PearldHTTPError for anything but 2xx. */
  async request<T>(method: string, path: string, token: string | null, timeoutMs = this.timeoutMs): Promise<T> {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (token) headers['Authorization'] = `Bearer ${token}`;
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, { method, headers, signal: ctrl.signal, cache: 'no-store' });
    } catch (err) {
      const why = ctrl.signal.aborted ? `no answer within ${timeoutMs} ms` : errorText(err);
      throw new PearldHTTPError(0, 'network', `${method} ${path}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
    let body: unknown = null;
    const text = await res.text().catch(() => '');
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    if (!res.ok) {
      const b = (body ?? {}) as { code?: unknown; message?: unknown; error?: unknown };
      const code = typeof b.code === 'string' ? b.code : `http_${res.status}`;
      const msg = typeof b.message === 'string' ? b.message : typeof b.error === 'string' ? b.error : res.statusText;
      throw new PearldHTTPError(res.status, code, `${method} ${path}: ${res.status} ${msg}`);
    }
    return body as T;
  }

  /** publisherStatus reads the latest publisher_status of a channel; null when none is known yet. */
  async publisherStatus(device: string, channel: string, token: string | null): Promise<PublisherStateAnswer | null> {
    try {
      return await this.request<PublisherStateAnswer>(
        'GET',
        `/api/device-state/devices/${enc(device)}/channels/${enc(channel)}/publishers/status`,
        token,
      );
    } catch (err) {
      if (err instanceof PearldHTTPError && err.status === 404 && err.code === 'no_data') return null;
      throw err;
    }
  }

  /** events reads the newest stored events matching a filter, oldest first. */
  events(q: { type?: string; device?: string; channel?: string; since?: number; limit?: number }, token: string | null): Promise<StoredEvent[]> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
    return this.request<StoredEvent[]>('GET', `/api/realtime/events?${p.toString()}`, token);
  }

  /**
   * snapshot reads the latest state of a key: from the latest-state route
   * for a channel's publisher_status (authoritative, from memory), from
   * the event store for everything else (which holds recent changes only,
   * so a quiet key may have none).
   */
  async snapshot(k: Key, token: string | null): Promise<HTTPSnapshot | null> {
    if (k.dataType === 'publisher_status' && k.channel !== undefined && k.publisherId === undefined) {
      const a = await this.publisherStatus(k.device, k.channel, token);
      return a && { data: a.data, timestamp: a.timestamp, seq: a.seq };
    }
    const q: { type: string; device: string; channel?: string; limit: number } = {
      type: k.dataType,
      device: k.device,
      limit: k.publisherId === undefined ? 1 : 100,
    };
    if (k.channel !== undefined) q.channel = k.channel;
    const events = await this.events(q, token);
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i] as StoredEvent;
      if ((e.channel ?? undefined) !== k.channel && k.channel !== undefined) continue;
      if (k.channel === undefined && e.channel !== null) continue;
      if ((e.publisher_id ?? undefined) !== k.publisherId) continue;
      return { data: e.data, timestamp: e.timestamp, seq: e.seq };
    }
    return null;
  }

  /** control starts or stops all publishers of a channel, or one. */
  control(action: 'start' | 'stop', device: string, channel: string, publisherId: string | undefined, token: string | null, timeoutMs: number): Promise<ControlAnswer> {
    const base = `/api/devices/${enc(device)}/channels/${enc(channel)}/publishers`;
    const path = publisherId === undefined ? `${base}/${action}` : `${base}/${enc(publisherId)}/control/${action}`;
    return this.request<ControlAnswer>('POST', path, token, timeoutMs);
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
