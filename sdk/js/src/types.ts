import type { BackoffOptions } from './backoff.js';
import type { FetchLike } from './http.js';
import type { ConnectedFrame } from './protocol.js';

/**
 * How a client, or one subscription, gets its data:
 * - `connected-live`: the WebSocket is up and the data is live;
 * - `connected-cached`: the WebSocket is up and the data is the server's
 *   latest known state (a `cached_data` snapshot), with no change seen live
 *   since (only a subscription reports it);
 * - `fallback-http`: the WebSocket is down and the REST API answers: data
 *   is polled;
 * - `disconnected`: neither answers; the data shown is the last known.
 */
export type ConnectionState = 'connected-live' | 'connected-cached' | 'fallback-http' | 'disconnected';

/** One delivery of a key's data. */
export interface Update {
  key: string;
  dataType: string;
  device: string;
  channel?: string;
  publisherId?: string;
  data: unknown;
  /** ISO-8601: when the source observed the data. */
  timestamp: string;
  /** The server's sequence number of the event, when known. */
  seq?: number;
  /** True for a snapshot of the latest state (cached_data or an HTTP read), false for a live change. */
  cached: boolean;
  /**
   * False when a resume could not replay what was missed while
   * disconnected: the data is the latest state, but changes in between
   * are unknown. True otherwise.
   */
  recovered: boolean;
  source: 'websocket' | 'http';
  /** When the client got it (clock milliseconds). */
  receivedAt: number;
}

/** An error of one subscription (unknown data type, forbidden device, limit) or of the client. */
export interface SubscriptionError {
  key?: string;
  code: string;
  message: string;
}

/** The counters and facts a client exposes. */
export interface ClientStats {
  state: ConnectionState;
  connected: boolean;
  reconnectAttempts: number;
  lastConnected: Date | null;
  lastError: string | null;
  lastClose: { code: number; reason: string } | null;
  messagesReceived: number;
  /** Updates delivered to subscribers, from both transports. */
  updates: number;
  /** data_update frames dropped because their seq was already seen. */
  duplicates: number;
  /** Resumes the server could not serve (`recovered: false`). */
  resyncs: number;
  subscriptions: number;
  httpPolls: number;
  httpErrors: number;
  /** Round trip of the last ping, in ms. */
  latencyMs: number | null;
  epoch: number | null;
  clientId: string | null;
}

/** The parts of a WebSocket the client uses; the browser's WebSocket has them. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Timers and time, replaceable in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

export interface FallbackOptions {
  /** Poll the REST API while the WebSocket is down. Default true. */
  enabled?: boolean;
  /** Time between two polls of every subscribed key, in ms. Default 2000. */
  intervalMs?: number;
}

export interface ClientOptions {
  /** The hub's WebSocket URL, e.g. `wss://host/ws/realtime` or `ws://host:3446/`. */
  url: string;
  /** Base URL of the REST API. Default: the WebSocket URL's origin, over http(s). */
  apiBase?: string;
  /** The token to start with. */
  token?: string | null;
  /**
   * Returns a fresh token. Called when there is none, shortly before the
   * token expires (from its `exp`), when the hub closes with 1008 for
   * authentication, and when the REST API answers 401.
   */
  getToken?: TokenSource;
  /** How long before `exp` to refresh, in ms. Default 60000 (a quarter of the lifetime for shorter tokens). */
  refreshBeforeMs?: number;
  backoff?: BackoffOptions;
  /** A connection that lasted this long resets the backoff. Default 10000. */
  stableAfterMs?: number;
  /** How long a connection may take to say `connected`, in ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Ping interval in ms; a connection silent for two intervals is dropped. 0 disables. Default 25000. */
  pingIntervalMs?: number;
  fallback?: FallbackOptions;
  /** Timeout of REST reads, in ms. Default 8000. */
  httpTimeoutMs?: number;
  /** Timeout of control calls, in ms. Default 15000 (the server's own is 10 s). */
  controlTimeoutMs?: number;
  /** Ask for `batch` frames (`?batch=1`). Default false. */
  batch?: boolean;
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  clock?: Clock;
  /** Returns a number in [0, 1); jitter of the backoff. Default Math.random. */
  random?: () => number;
  /** Receives debug and warning messages. Default: none. */
  logger?: { debug(...a: unknown[]): void; warn(...a: unknown[]): void } | null;
}

export interface ClientEvents {
  /** The client's state changed. */
  state: (s: ConnectionState) => void;
  /** The hub welcomed a connection. */
  connected: (f: ConnectedFrame) => void;
  /** A subscription or the connection failed. */
  error: (e: SubscriptionError) => void;
  /** Anything in stats, state or a subscription changed. */
  change: () => void;
}
