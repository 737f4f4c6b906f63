/** An answer of the REST API that is not 2xx, or a request that got no answer. */
export class PearldHTTPError extends Error {
    constructor(status, code, message) {
        super(message);
        this.name = 'PearldHTTPError';
        this.status = status;
        this.code = code;
    }
}
function enc(s) {
    return encodeURIComponent(s);
}
/**
 * RestClient calls pearld's REST API with a bearer token. It is what the
 * WebSocket client falls back to, and what control calls use.
 */
export class RestClient {
    constructor(base, fetchImpl, timeoutMs) {
        this.base = base;
        this.fetchImpl = fetchImpl;
        this.timeoutMs = timeoutMs;
    }
    /** request sends one call and decodes its JSON answer, throwing PearldHTTPError for anything but 2xx. */
    async request(method, path, token, timeoutMs = this.timeoutMs) {
        const ctrl = new AbortController();
        const timer = setTimeout(() => ctrl.abort(), timeoutMs);
        const headers = { Accept: 'application/json' };
        if (token)
            headers['Authorization'] = `Bearer ${token}`;
        let res;
        try {
            res = await this.fetchImpl(this.base + path, { method, headers, signal: ctrl.signal, cache: 'no-store' });
        }
        catch (err) {
            const why = ctrl.signal.aborted ? `no answer within ${timeoutMs} ms` : errorText(err);
            throw new PearldHTTPError(0, 'network', `${method} ${path}: ${why}`);
        }
        finally {
            clearTimeout(timer);
        }
        let body = null;
        const text = await res.text().catch(() => '');
        if (text !== '') {
            try {
                body = JSON.parse(text);
            }
            catch {
                body = null;
            }
        }
        if (!res.ok) {
            const b = (body ?? {});
            const code = typeof b.code === 'string' ? b.code : `http_${res.status}`;
            const msg = typeof b.message === 'string' ? b.message : typeof b.error === 'string' ? b.error : res.statusText;
            throw new PearldHTTPError(res.status, code, `${method} ${path}: ${res.status} ${msg}`);
        }
        return body;
    }
    /** publisherStatus reads the latest publisher_status of a channel; null when none is known yet. */
    async publisherStatus(device, channel, token) {
        try {
            return await this.request('GET', `/api/device-state/devices/${enc(device)}/channels/${enc(channel)}/publishers/status`, token);
        }
        catch (err) {
            if (err instanceof PearldHTTPError && err.status === 404 && err.code === 'no_data')
                return null;
            throw err;
        }
    }
    /** events reads the newest stored events matching a filter, oldest first. */
    events(q, token) {
        const p = new URLSearchParams();
        for (const [k, v] of Object.entries(q))
            if (v !== undefined && v !== '')
                p.set(k, String(v));
        return this.request('GET', `/api/realtime/events?${p.toString()}`, token);
    }
    /**
     * snapshot reads the latest state of a key: from the latest-state route
     * for a channel's publisher_status (authoritative, from memory), from
     * the event store for everything else (which holds recent changes only,
     * so a quiet key may have none).
     */
    async snapshot(k, token) {
        if (k.dataType === 'publisher_status' && k.channel !== undefined && k.publisherId === undefined) {
            const a = await this.publisherStatus(k.device, k.channel, token);
            return a && { data: a.data, timestamp: a.timestamp, seq: a.seq };
        }
        const q = {
            type: k.dataType,
            device: k.device,
            limit: k.publisherId === undefined ? 1 : 100,
        };
        if (k.channel !== undefined)
            q.channel = k.channel;
        const events = await this.events(q, token);
        for (let i = events.length - 1; i >= 0; i--) {
            const e = events[i];
            if ((e.channel ?? undefined) !== k.channel && k.channel !== undefined)
                continue;
            if (k.channel === undefined && e.channel !== null)
                continue;
            if ((e.publisher_id ?? undefined) !== k.publisherId)
                continue;
            return { data: e.data, timestamp: e.timestamp, seq: e.seq };
        }
        return null;
    }
    /** control starts or stops all publishers of a channel, or one. */
    control(action, device, channel, publisherId, token, timeoutMs) {
        const base = `/api/devices/${enc(device)}/channels/${enc(channel)}/publishers`;
        const path = publisherId === undefined ? `${base}/${action}` : `${base}/${enc(publisherId)}/control/${action}`;
        return this.request('POST', path, token, timeoutMs);
    }
}
export function errorText(err) {
    if (err instanceof Error)
        return err.message;
    return String(err);
}
