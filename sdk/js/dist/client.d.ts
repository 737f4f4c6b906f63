import { type ControlAnswer, type HTTPSnapshot } from './http.js';
import { type TokenClaims } from './jwt.js';
import { type Id, type KeySpec } from './keys.js';
import { type Capabilities, type ConnectedFrame } from './protocol.js';
import { type ClientEvents, type ClientOptions, type ClientStats, type ConnectionState, type SubscriptionError, type TokenSource, type Update } from './types.js';
export type { ClientOptions, ClientStats, Clock, ConnectionState, FallbackOptions, SubscriptionError, TokenSource, Update, WebSocketConstructor, WebSocketLike, } from './types.js';
type Listener = (u: Update) => void;
type ErrorListener = (e: SubscriptionError) => void;
/** A handle on one subscriber of a key. */
export interface Subscription {
    readonly key: string;
    /** The latest data of the key, when known. */
    readonly latest: Update | undefined;
    /** The state of this key's data (see ConnectionState). */
    readonly state: ConnectionState;
    /** The key's error, when the hub refused it. */
    readonly error: SubscriptionError | undefined;
    /** Asks for the latest state again (get_cached_data, or an HTTP read while in fallback). */
    refresh(): Promise<void>;
    /** Drops this subscriber; the key is unsubscribed when none is left. */
    unsubscribe(): void;
}
/**
 * PearldClient is one connection to a pearld hub, shared by every
 * subscriber of a page: see getClient. It subscribes each key once
 * however many subscribers it has, resumes after a reconnect with `since`
 * and `epoch` so that no change is missed, refreshes its token before it
 * expires, and polls the REST API while the WebSocket is down.
 */
export declare class PearldClient {
    readonly url: string;
    readonly apiBase: string;
    private readonly opts;
    private readonly clock;
    private readonly random;
    private readonly WS;
    private readonly rest;
    private readonly log;
    private readonly tokens;
    private ws;
    private phase;
    private started;
    private authBlocked;
    private attempt;
    private openedAt;
    private lastMessageAt;
    private connectTimer;
    private reconnectTimer;
    private pingTimer;
    private fallbackActive;
    private fallbackAnswering;
    private fallbackFailed;
    private fallbackTimer;
    private fallbackGen;
    private readonly entries;
    private readonly pendingLists;
    private readonly listeners;
    private currentState;
    private caps;
    private welcome;
    private readonly counters;
    constructor(options: ClientOptions);
    /** The client's state; `connected-cached` is only ever a subscription's. */
    get state(): ConnectionState;
    /** What the hub said about itself when the connection opened, null before. */
    get capabilities(): Capabilities | null;
    /** The hub's `connected` frame of the current or last connection. */
    get connectedFrame(): ConnectedFrame | null;
    /** The token's decoded claims (unverified), or null. */
    get claims(): TokenClaims | null;
    /** The current token. */
    getToken(): string | null;
    stats(): ClientStats;
    on<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): () => void;
    /** Starts connecting, when not already; subscribe does it too. */
    connect(): void;
    /** Sets the function that returns fresh tokens (see ClientOptions.getToken). */
    setTokenSource(fn: TokenSource | undefined): void;
    /** Tells whether the client has a function that returns fresh tokens. */
    get hasTokenSource(): boolean;
    /** Replaces the token. A client stopped by a refused token reconnects with it. */
    setToken(token: string | null): void;
    private tokenChanged;
    /**
     * Subscribes to a key. Every call adds one subscriber; the hub is asked
     * once per key. onUpdate gets the latest state at once when it is known
     * (in a microtask), then every change.
     */
    subscribe(spec: KeySpec, onUpdate?: Listener, onError?: ErrorListener): Subscription;
    /** The latest data of a key this client is subscribed to. */
    latest(spec: KeySpec | string): Update | undefined;
    /** The state of one key's data: connected-cached while it is a snapshot. */
    keyState(key: string): ConnectionState;
    /** Asks again for the latest state of a subscribed key. */
    refreshKey(key: string): Promise<void>;
    /** Lists the keys the hub knows and this token may see (`list_streams`). */
    listStreams(timeoutMs?: number): Promise<Record<string, {
        subscribers: number;
    }>>;
    /** Starts every publisher of a channel. */
    startPublishers(device: Id, channel: Id): Promise<ControlAnswer>;
    /** Stops every publisher of a channel. */
    stopPublishers(device: Id, channel: Id): Promise<ControlAnswer>;
    /** Starts one publisher. */
    startPublisher(device: Id, channel: Id, publisherId: Id): Promise<ControlAnswer>;
    /** Stops one publisher. */
    stopPublisher(device: Id, channel: Id, publisherId: Id): Promise<ControlAnswer>;
    /** Reads a channel's latest publisher_status over REST. */
    publisherStatus(device: Id, channel: Id): Promise<HTTPSnapshot | null>;
    /** Closes the connection for good and stops every timer; subscribe or connect starts again. */
    close(): void;
    private open;
    /**
     * detach forgets a socket and reacts to its end. byPeer tells that the
     * socket closed by itself; otherwise the client closes it.
     */
    private detach;
    private afterClose;
    private scheduleReconnect;
    /** Tries to reconnect now, skipping the backoff wait. */
    reconnectNow(): void;
    private onMessage;
    private onFrame;
    private onConnected;
    private onData;
    private deliver;
    private call;
    private release;
    private send;
    private schedulePing;
    private fallbackEnabled;
    private startFallback;
    private stopFallback;
    private pollRound;
    /** probe tells whether the REST API answers, when there is nothing to poll. */
    private probe;
    /** pollKey reads one key over HTTP; it reports whether the API answered usefully. */
    private pollKey;
    private noteHTTPError;
    private control;
    private setState;
    private emit;
    private emitError;
    private clearTimer;
}
/**
 * withQuery adds the token (browsers cannot set headers on a WebSocket, so
 * the hub reads `?token=`) and the batch opt-in to a WebSocket URL.
 */
export declare function withQuery(url: string, token: string | null, batch: boolean): string;
/** deriveApiBase turns `ws(s)://host:port/path` into `http(s)://host:port`. */
export declare function deriveApiBase(wsUrl: string): string;
