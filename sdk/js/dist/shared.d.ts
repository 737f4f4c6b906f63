import { PearldClient, type ClientOptions } from './client.js';
/**
 * getClient returns the page's client for options.url, creating it on the
 * first call: every component of a page shares one connection per hub.
 * Later calls with the same URL return the same client and ignore their
 * other options, except that a getToken or token is taken when the shared
 * client has none.
 */
export declare function getClient(options: ClientOptions): PearldClient;
/** closeAllClients closes and forgets every shared client (tests, logout). */
export declare function closeAllClients(): void;
/**
 * defaultUrls are the URLs of a hub behind the page's own origin, as the
 * dashboards this client replaces used it: `ws(s)://host/ws/realtime` and
 * the REST API at the page's origin.
 */
export declare function defaultUrls(loc?: {
    protocol: string;
    host: string;
    origin: string;
}): {
    url: string;
    apiBase: string;
};
