// The client's connection state machine: one WebSocket, the subscriptions
// it carries, reconnection, resume and the HTTP fallback. They share one
// state (the phase, the entries, their last seq), so they live in one
// class; wire types, tokens, keys and REST calls are in their own modules.
import { backoffDelay } from './backoff.js';
import { PearldHTTPError, RestClient, errorText } from './http.js';
import { decodeToken } from './jwt.js';
import { Tokens } from './tokens.js';
import { normalizeKey } from './keys.js';
import { AuthCloseReasons, CloseCode, } from './protocol.js';
import { realClock, } from './types.js';
/**
 * PearldClient is one connection to a pearld hub, shared by every
 * subscriber of a page: see getClient. It subscribes each key once
 * however many subscribers it has, resumes after a reconnect with `since`
 * and `epoch` so that no change is missed, refreshes its token before it
 * expires, and polls the REST API while the WebSocket is down.
 */
export class PearldClient {
    constructor(options) {
        this.ws = null;
        this.phase = 'idle';
        this.started = false;
        this.authBlocked = false;
        this.attempt = 0;
        this.openedAt = 0;
        this.lastMessageAt = 0;
        this.connectTimer = null;
        this.reconnectTimer = null;
        this.pingTimer = null;
        this.fallbackActive = false;
        this.fallbackAnswering = false;
        this.fallbackFailed = false;
        this.fallbackTimer = null;
        this.fallbackGen = 0;
        this.entries = new Map();
        this.pendingLists = [];
        this.listeners = {
            state: new Set(),
            connected: new Set(),
            error: new Set(),
            change: new Set(),
        };
        this.currentState = 'disconnected';
        this.caps = null;
        this.welcome = null;
        this.counters = {
            reconnectAttempts: 0,
            lastConnected: null,
            lastError: null,
            lastClose: null,
            messagesReceived: 0,
            updates: 0,
            duplicates: 0,
            resyncs: 0,
            httpPolls: 0,
            httpErrors: 0,
            latencyMs: null,
        };
        this.opts = options;
        this.url = options.url;
        this.apiBase = (options.apiBase ?? deriveApiBase(options.url)).replace(/\/+$/, '');
        this.clock = options.clock ?? realClock;
        this.random = options.random ?? Math.random;
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== 'function')
            throw new Error('pearld: no WebSocket implementation; pass options.WebSocket');
        this.WS = WS;
        const f = options.fetch ?? globalThis.fetch?.bind(globalThis);
        if (typeof f !== 'function')
            throw new Error('pearld: no fetch implementation; pass options.fetch');
        this.rest = new RestClient(this.apiBase, f, options.httpTimeoutMs ?? 8000);
        this.log = options.logger ?? null;
        this.tokens = new Tokens(options.token ?? null, options.getToken, this.clock, options.refreshBeforeMs ?? 60000, (t) => this.tokenChanged(t), (msg) => {
            this.counters.lastError = msg;
            this.log?.warn('pearld:', msg);
        });
    }
    // ---- public API ----
    /** The client's state; `connected-cached` is only ever a subscription's. */
    get state() {
        return this.currentState;
    }
    /** What the hub said about itself when the connection opened, null before. */
    get capabilities() {
        return this.caps;
    }
    /** The hub's `connected` frame of the current or last connection. */
    get connectedFrame() {
        return this.welcome;
    }
    /** The token's decoded claims (unverified), or null. */
    get claims() {
        return decodeToken(this.tokens.token);
    }
    /** The current token. */
    getToken() {
        return this.tokens.token;
    }
    stats() {
        return {
            ...this.counters,
            lastConnected: this.counters.lastConnected && new Date(this.counters.lastConnected.getTime()),
            lastClose: this.counters.lastClose && { ...this.counters.lastClose },
            state: this.currentState,
            connected: this.phase === 'open',
            subscriptions: this.entries.size,
            epoch: this.caps?.epoch ?? null,
            clientId: this.welcome?.clientId ?? null,
        };
    }
    on(event, fn) {
        this.listeners[event].add(fn);
        return () => this.listeners[event].delete(fn);
    }
    /** Starts connecting, when not already; subscribe does it too. */
    connect() {
        if (this.started)
            return;
        this.started = true;
        this.attempt = 0;
        this.tokens.start();
        void this.open();
    }
    /** Sets the function that returns fresh tokens (see ClientOptions.getToken). */
    setTokenSource(fn) {
        this.tokens.setSource(fn);
    }
    /** Tells whether the client has a function that returns fresh tokens. */
    get hasTokenSource() {
        return this.tokens.hasSource;
    }
    /** Replaces the token. A client stopped by a refused token reconnects with it. */
    setToken(token) {
        this.tokens.set(token);
    }
    tokenChanged(token) {
        if (this.authBlocked && token) {
            this.authBlocked = false;
            if (this.started && this.phase === 'idle') {
                this.attempt = 0;
                this.clearTimer('reconnectTimer');
                void this.open();
            }
        }
        this.emit('change');
    }
    /**
     * Subscribes to a key. Every call adds one subscriber; the hub is asked
     * once per key. onUpdate gets the latest state at once when it is known
     * (in a microtask), then every change.
     */
    subscribe(spec, onUpdate, onError) {
        const k = normalizeKey(spec);
        let e = this.entries.get(k.key);
        const created = !e;
        if (!e) {
            e = { k, holders: new Set(), latest: undefined, lastSeq: undefined, epoch: undefined, version: 0, subscribed: false, noData: false, error: undefined };
            this.entries.set(k.key, e);
        }
        const entry = e;
        const holder = { onUpdate, onError, seen: -1 };
        entry.holders.add(holder);
        if (created) {
            if (this.phase === 'open')
                this.send({ type: 'subscribe', ...keyRequest(k) });
            else if (this.fallbackActive)
                void this.pollKey(entry, this.fallbackGen);
            this.emit('change');
        }
        else if (entry.latest) {
            queueMicrotask(() => {
                const u = entry.latest;
                if (u && entry.holders.has(holder) && holder.seen < entry.version)
                    this.call(holder, u, entry.version);
            });
        }
        this.connect();
        let active = true;
        const self = this;
        return {
            key: k.key,
            get latest() {
                return entry.latest;
            },
            get state() {
                return self.keyState(k.key);
            },
            get error() {
                return entry.error;
            },
            refresh: () => this.refreshKey(k.key),
            unsubscribe: () => {
                if (!active)
                    return;
                active = false;
                this.release(entry, holder);
            },
        };
    }
    /** The latest data of a key this client is subscribed to. */
    latest(spec) {
        const key = typeof spec === 'string' ? spec : normalizeKey(spec).key;
        return this.entries.get(key)?.latest;
    }
    /** The state of one key's data: connected-cached while it is a snapshot. */
    keyState(key) {
        if (this.currentState !== 'connected-live')
            return this.currentState;
        const u = this.entries.get(key)?.latest;
        return u && u.cached ? 'connected-cached' : 'connected-live';
    }
    /** Asks again for the latest state of a subscribed key. */
    async refreshKey(key) {
        const e = this.entries.get(key);
        if (!e)
            return;
        if (this.phase === 'open')
            this.send({ type: 'get_cached_data', ...keyRequest(e.k) });
        else if (this.fallbackActive)
            await this.pollKey(e, this.fallbackGen);
    }
    /** Lists the keys the hub knows and this token may see (`list_streams`). */
    listStreams(timeoutMs = 5000) {
        if (this.phase !== 'open' || !this.ws)
            return Promise.reject(new Error('pearld: not connected'));
        return new Promise((resolve, reject) => {
            const item = {
                resolve,
                reject,
                timer: this.clock.setTimeout(() => {
                    const i = this.pendingLists.indexOf(item);
                    if (i >= 0)
                        this.pendingLists.splice(i, 1);
                    reject(new Error('pearld: no stream_list within ' + timeoutMs + ' ms'));
                }, timeoutMs),
            };
            this.pendingLists.push(item);
            this.send({ type: 'list_streams' });
        });
    }
    /** Starts every publisher of a channel. */
    startPublishers(device, channel) {
        return this.control('start', device, channel);
    }
    /** Stops every publisher of a channel. */
    stopPublishers(device, channel) {
        return this.control('stop', device, channel);
    }
    /** Starts one publisher. */
    startPublisher(device, channel, publisherId) {
        return this.control('start', device, channel, publisherId);
    }
    /** Stops one publisher. */
    stopPublisher(device, channel, publisherId) {
        return this.control('stop', device, channel, publisherId);
    }
    /** Reads a channel's latest publisher_status over REST. */
    publisherStatus(device, channel) {
        const k = normalizeKey({ dataType: 'publisher_status', device, channel });
        return this.tokens.withToken((t) => this.rest.snapshot(k, t));
    }
    /** Closes the connection for good and stops every timer; subscribe or connect starts again. */
    close() {
        this.started = false;
        this.clearTimer('reconnectTimer');
        this.tokens.stop();
        this.stopFallback();
        const ws = this.ws;
        if (ws)
            this.detach(ws, CloseCode.Normal, 'Client closed');
        this.phase = 'idle';
        this.setState();
    }
    // ---- connection ----
    async open() {
        if (!this.started || this.phase !== 'idle' || this.authBlocked)
            return;
        this.phase = 'connecting';
        const token = await this.tokens.fresh(false);
        if (!this.started || this.phase !== 'connecting' || this.ws) {
            if (!this.ws)
                this.phase = 'idle';
            return;
        }
        let ws;
        try {
            ws = new this.WS(withQuery(this.url, token, this.opts.batch === true));
        }
        catch (err) {
            this.phase = 'idle';
            this.counters.lastError = errorText(err);
            this.afterClose(false, CloseCode.Abnormal, '');
            return;
        }
        this.ws = ws;
        this.lastMessageAt = this.clock.now();
        this.connectTimer = this.clock.setTimeout(() => {
            if (this.ws === ws && this.phase === 'connecting') {
                this.counters.lastError = 'no connected frame within ' + (this.opts.connectTimeoutMs ?? 10000) + ' ms';
                this.detach(ws, CloseCode.Abnormal, 'Connect timeout');
            }
        }, this.opts.connectTimeoutMs ?? 10000);
        ws.onmessage = (ev) => {
            if (this.ws === ws)
                this.onMessage(ev.data);
        };
        ws.onclose = (ev) => {
            if (this.ws === ws)
                this.detach(ws, ev.code ?? CloseCode.Abnormal, ev.reason ?? '', true);
        };
        ws.onerror = () => {
            if (this.ws === ws)
                this.counters.lastError = 'WebSocket error';
        };
    }
    /**
     * detach forgets a socket and reacts to its end. byPeer tells that the
     * socket closed by itself; otherwise the client closes it.
     */
    detach(ws, code, reason, byPeer = false) {
        if (this.ws !== ws)
            return;
        ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
        if (!byPeer) {
            try {
                ws.close(code === CloseCode.Normal ? CloseCode.Normal : 4000, reason.slice(0, 100));
            }
            catch {
                // Closing a socket that never opened may throw; it is gone either way.
            }
        }
        const wasOpen = this.phase === 'open';
        this.ws = null;
        this.phase = 'idle';
        this.clearTimer('connectTimer');
        this.clearTimer('pingTimer');
        for (const e of this.entries.values())
            e.subscribed = false;
        for (const p of this.pendingLists.splice(0)) {
            this.clock.clearTimeout(p.timer);
            p.reject(new Error('pearld: connection closed'));
        }
        this.counters.lastClose = { code, reason };
        this.log?.debug('pearld: connection closed', code, reason);
        this.afterClose(wasOpen, code, reason);
    }
    afterClose(wasOpen, code, reason) {
        if (wasOpen && this.clock.now() - this.openedAt >= (this.opts.stableAfterMs ?? 10000))
            this.attempt = 0;
        if (!this.started) {
            this.setState();
            return;
        }
        if (code === CloseCode.PolicyViolation && AuthCloseReasons.includes(reason)) {
            // The token was refused: only a new one can help, over WebSocket
            // and REST alike.
            this.counters.lastError = reason;
            this.emitError({ code: 'auth', message: reason });
            const old = this.tokens.token;
            void this.tokens.fresh(true).then((t) => {
                if (!this.started || this.phase !== 'idle')
                    return;
                if (t && t !== old) {
                    this.startFallback();
                    this.scheduleReconnect();
                }
                else {
                    this.authBlocked = true; // until setToken or reconnectNow
                }
                this.setState();
            });
            this.setState();
            return;
        }
        this.startFallback();
        this.scheduleReconnect();
        this.setState();
    }
    scheduleReconnect() {
        this.clearTimer('reconnectTimer');
        const delay = backoffDelay(this.attempt, this.opts.backoff, this.random);
        this.attempt++;
        this.counters.reconnectAttempts = this.attempt;
        this.log?.debug('pearld: reconnecting in', delay, 'ms, attempt', this.attempt);
        this.reconnectTimer = this.clock.setTimeout(() => {
            this.reconnectTimer = null;
            void this.open();
        }, delay);
        this.emit('change');
    }
    /** Tries to reconnect now, skipping the backoff wait. */
    reconnectNow() {
        if (!this.started)
            return this.connect();
        if (this.phase !== 'idle')
            return;
        this.clearTimer('reconnectTimer');
        this.authBlocked = false;
        void this.open();
    }
    onMessage(raw) {
        this.lastMessageAt = this.clock.now();
        this.counters.messagesReceived++;
        let f;
        try {
            f = JSON.parse(String(raw));
        }
        catch {
            this.log?.warn('pearld: a frame that is not JSON', raw);
            return;
        }
        if (f === null || typeof f !== 'object')
            return;
        this.onFrame(f);
        this.emit('change');
    }
    onFrame(f) {
        switch (f.type) {
            case 'connected':
                return this.onConnected(f);
            case 'data_update':
            case 'cached_data':
                return this.onData(f);
            case 'batch':
                if (Array.isArray(f.events))
                    for (const e of f.events)
                        if (e && typeof e === 'object')
                            this.onFrame(e);
                return;
            case 'subscribed': {
                const e = this.entries.get(f.subscriptionKey);
                if (e) {
                    e.subscribed = true;
                    e.error = undefined;
                }
                return;
            }
            case 'no_cached_data': {
                const e = this.entries.get(f.subscriptionKey);
                if (e)
                    e.noData = true;
                return;
            }
            case 'stream_list': {
                const p = this.pendingLists.shift();
                if (p) {
                    this.clock.clearTimeout(p.timer);
                    p.resolve(f.streams ?? {});
                }
                return;
            }
            case 'pong': {
                const ts = typeof f.timestamp === 'number' ? f.timestamp : NaN;
                if (Number.isFinite(ts))
                    this.counters.latencyMs = Math.max(0, this.clock.now() - ts);
                return;
            }
            case 'error': {
                const err = { code: f.code ?? 'error', message: f.message ?? 'error' };
                const e = f.subscriptionKey ? this.entries.get(f.subscriptionKey) : undefined;
                if (e) {
                    err.key = e.k.key;
                    e.error = err;
                    for (const h of e.holders)
                        h.onError?.(err);
                }
                else {
                    this.counters.lastError = err.message;
                }
                this.emitError(err);
                return;
            }
            default:
                return; // unsubscribed, and types a newer hub may add
        }
    }
    onConnected(f) {
        if (this.phase !== 'connecting')
            return;
        this.clearTimer('connectTimer');
        this.phase = 'open';
        this.authBlocked = false;
        this.welcome = f;
        this.caps = f.capabilities ?? { dataTypes: [] };
        this.openedAt = this.clock.now();
        this.counters.lastConnected = new Date(this.openedAt);
        this.counters.lastError = null;
        this.stopFallback();
        const epoch = this.caps.epoch;
        for (const e of this.entries.values()) {
            const req = { type: 'subscribe', ...keyRequest(e.k) };
            if (e.lastSeq !== undefined) {
                req.since = e.lastSeq;
                if (e.epoch !== undefined)
                    req.epoch = e.epoch;
            }
            this.send(req);
        }
        this.log?.debug('pearld: connected, epoch', epoch);
        this.schedulePing();
        this.setState();
        for (const fn of this.listeners.connected)
            safeCall(() => fn(f), this.log);
    }
    onData(f) {
        const e = this.entries.get(f.subscriptionKey);
        if (!e)
            return; // unsubscribed meanwhile
        const epoch = this.caps?.epoch;
        const seq = typeof f.seq === 'number' ? f.seq : undefined;
        if (f.type === 'data_update' && seq !== undefined && e.lastSeq !== undefined && e.epoch === epoch && seq <= e.lastSeq) {
            this.counters.duplicates++;
            return;
        }
        if (seq !== undefined) {
            e.lastSeq = seq;
            e.epoch = epoch;
        }
        const recovered = f.recovered !== false;
        if (!recovered)
            this.counters.resyncs++;
        this.deliver(e, {
            ...keyFields(e.k),
            data: f.data,
            timestamp: f.timestamp,
            ...(seq !== undefined ? { seq } : {}),
            cached: f.type === 'cached_data',
            recovered,
            source: 'websocket',
            receivedAt: this.clock.now(),
        });
    }
    deliver(e, u) {
        e.latest = u;
        e.noData = false;
        e.error = undefined;
        this.counters.updates++;
        e.version++;
        for (const h of e.holders)
            this.call(h, u, e.version);
    }
    call(h, u, version) {
        h.seen = version;
        if (h.onUpdate)
            safeCall(() => h.onUpdate?.(u), this.log);
    }
    release(e, h) {
        e.holders.delete(h);
        if (e.holders.size > 0 || this.entries.get(e.k.key) !== e)
            return;
        this.entries.delete(e.k.key);
        if (this.phase === 'open')
            this.send({ type: 'unsubscribe', ...keyRequest(e.k) });
        this.emit('change');
    }
    send(f) {
        const ws = this.ws;
        if (!ws)
            return;
        try {
            ws.send(JSON.stringify(f));
        }
        catch (err) {
            this.counters.lastError = errorText(err);
        }
    }
    schedulePing() {
        const every = this.opts.pingIntervalMs ?? 25000;
        if (every <= 0)
            return;
        this.pingTimer = this.clock.setTimeout(() => {
            this.pingTimer = null;
            const ws = this.ws;
            if (!ws || this.phase !== 'open')
                return;
            if (this.clock.now() - this.lastMessageAt > 2 * every) {
                this.counters.lastError = 'no message from the hub for ' + 2 * every + ' ms';
                this.detach(ws, CloseCode.Abnormal, 'Connection silent');
                return;
            }
            this.send({ type: 'ping', timestamp: this.clock.now() });
            this.schedulePing();
        }, every);
    }
    // ---- HTTP fallback ----
    fallbackEnabled() {
        return this.opts.fallback?.enabled !== false;
    }
    startFallback() {
        if (!this.fallbackEnabled() || this.fallbackActive || !this.started || this.authBlocked)
            return;
        this.fallbackActive = true;
        this.fallbackAnswering = false;
        this.fallbackFailed = false;
        const gen = ++this.fallbackGen;
        void this.pollRound(gen);
    }
    stopFallback() {
        if (!this.fallbackActive)
            return;
        this.fallbackActive = false;
        this.fallbackAnswering = false;
        this.fallbackGen++;
        this.clearTimer('fallbackTimer');
    }
    async pollRound(gen) {
        if (gen !== this.fallbackGen)
            return;
        const entries = [...this.entries.values()];
        let answered;
        if (entries.length === 0) {
            answered = await this.probe(gen);
        }
        else {
            const results = await Promise.all(entries.map((e) => this.pollKey(e, gen)));
            answered = results.some((r) => r);
        }
        if (gen !== this.fallbackGen)
            return;
        const back = answered && this.fallbackFailed;
        this.fallbackFailed = !answered;
        this.fallbackAnswering = answered;
        this.setState();
        if (back && this.phase === 'idle') {
            // The server answers again after it did not (a restart): try the
            // WebSocket now rather than at the end of a long backoff.
            this.attempt = 0;
            this.reconnectNow();
        }
        this.fallbackTimer = this.clock.setTimeout(() => {
            this.fallbackTimer = null;
            void this.pollRound(gen);
        }, this.opts.fallback?.intervalMs ?? 2000);
    }
    /** probe tells whether the REST API answers, when there is nothing to poll. */
    async probe(gen) {
        try {
            await this.tokens.withToken((t) => this.rest.request('GET', '/api/realtime/health', t));
            return gen === this.fallbackGen;
        }
        catch (err) {
            this.noteHTTPError(err);
            return false;
        }
    }
    /** pollKey reads one key over HTTP; it reports whether the API answered usefully. */
    async pollKey(e, gen) {
        this.counters.httpPolls++;
        let snap;
        try {
            snap = await this.tokens.withToken((t) => this.rest.snapshot(e.k, t));
        }
        catch (err) {
            this.noteHTTPError(err, e);
            return false;
        }
        if (gen !== this.fallbackGen || this.entries.get(e.k.key) !== e)
            return true;
        if (!snap) {
            if (!e.latest)
                e.noData = true;
            return true;
        }
        if (e.lastSeq !== undefined && snap.seq <= e.lastSeq && e.latest)
            return true;
        e.lastSeq = snap.seq;
        e.epoch = undefined; // REST answers do not name the epoch
        this.deliver(e, {
            ...keyFields(e.k),
            data: snap.data,
            timestamp: snap.timestamp,
            seq: snap.seq,
            cached: true,
            recovered: true,
            source: 'http',
            receivedAt: this.clock.now(),
        });
        this.emit('change');
        return true;
    }
    noteHTTPError(err, e) {
        this.counters.httpErrors++;
        this.counters.lastError = errorText(err);
        if (e && err instanceof PearldHTTPError && (err.status === 403 || err.status === 400)) {
            const se = { key: e.k.key, code: err.code, message: err.message };
            e.error = se;
            for (const h of e.holders)
                h.onError?.(se);
        }
    }
    async control(action, device, channel, publisherId) {
        const k = normalizeKey({ dataType: 'publisher_status', device, channel, publisherId });
        const timeout = this.opts.controlTimeoutMs ?? 15000;
        return this.tokens.withToken((t) => this.rest.control(action, k.device, k.channel ?? '', k.publisherId, t, timeout));
    }
    // ---- helpers ----
    setState() {
        let s = 'disconnected';
        if (this.phase === 'open')
            s = 'connected-live';
        else if (this.fallbackActive && this.fallbackAnswering)
            s = 'fallback-http';
        if (s !== this.currentState) {
            this.currentState = s;
            for (const fn of this.listeners.state)
                safeCall(() => fn(s), this.log);
        }
        this.emit('change');
    }
    emit(event) {
        for (const fn of this.listeners[event])
            safeCall(() => fn(), this.log);
    }
    emitError(e) {
        for (const fn of this.listeners.error)
            safeCall(() => fn(e), this.log);
    }
    clearTimer(name) {
        const h = this[name];
        if (h !== null)
            this.clock.clearTimeout(h);
        this[name] = null;
    }
}
function keyRequest(k) {
    const r = { dataType: k.dataType, device: k.device };
    if (k.channel !== undefined)
        r.channel = k.channel;
    if (k.publisherId !== undefined)
        r.publisherId = k.publisherId;
    return r;
}
function keyFields(k) {
    const f = { key: k.key, dataType: k.dataType, device: k.device };
    if (k.channel !== undefined)
        f.channel = k.channel;
    if (k.publisherId !== undefined)
        f.publisherId = k.publisherId;
    return f;
}
function safeCall(fn, log) {
    try {
        fn();
    }
    catch (err) {
        log?.warn('pearld: a listener threw', err);
    }
}
/**
 * withQuery adds the token (browsers cannot set headers on a WebSocket, so
 * the hub reads `?token=`) and the batch opt-in to a WebSocket URL.
 */
export function withQuery(url, token, batch) {
    const u = new URL(url);
    if (token)
        u.searchParams.set('token', token);
    else
        u.searchParams.delete('token');
    if (batch)
        u.searchParams.set('batch', '1');
    return u.toString();
}
/** deriveApiBase turns `ws(s)://host:port/path` into `http(s)://host:port`. */
export function deriveApiBase(wsUrl) {
    const u = new URL(wsUrl);
    const scheme = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
    return `${scheme}//${u.host}`;
}
