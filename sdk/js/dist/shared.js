import { PearldClient } from './client.js';
const clients = new Map();
/**
 * getClient returns the page's client for options.url, creating it on the
 * first call: every component of a page shares one connection per hub.
 * Later calls with the same URL return the same client and ignore their
 * other options, except that a getToken or token is taken when the shared
 * client has none.
 */
export function getClient(options) {
    const existing = clients.get(options.url);
    if (existing) {
        if (!existing.hasTokenSource && options.getToken)
            existing.setTokenSource(options.getToken);
        if (!existing.getToken() && options.token)
            existing.setToken(options.token);
        return existing;
    }
    const c = new PearldClient(options);
    clients.set(options.url, c);
    return c;
}
/** closeAllClients closes and forgets every shared client (tests, logout). */
export function closeAllClients() {
    for (const c of clients.values())
        c.close();
    clients.clear();
}
/**
 * defaultUrls are the URLs of a hub behind the page's own origin, as the
 * dashboards this client replaces used it: `ws(s)://host/ws/realtime` and
 * the REST API at the page's origin.
 */
export function defaultUrls(loc = globalThis.location) {
    const ws = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    return { url: `${ws}//${loc.host}/ws/realtime`, apiBase: loc.origin };
}
