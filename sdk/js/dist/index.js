/**
 * pearld-client: the browser client of pearld's real-time protocol.
 *
 * ```ts
 * import { getClient } from 'pearld-client';
 * const client = getClient({ url: 'wss://pearld.example.com/ws/realtime', getToken: () => auth.token() });
 * const sub = client.subscribe({ dataType: 'publisher_status', device: 'studio-a', channel: 1 }, (u) => render(u.data));
 * client.on('state', (s) => showIndicator(s)); // connected-live, fallback-http, disconnected
 * sub.unsubscribe();
 * ```
 */
export { PearldClient, deriveApiBase, withQuery } from './client.js';
export { getClient, closeAllClients, defaultUrls } from './shared.js';
export { backoffBounds, backoffDelay, defaultBackoff } from './backoff.js';
export { PearldHTTPError } from './http.js';
export { allowsDevice, canControl, canRead, decodeToken, globMatch, tokenExpiry } from './jwt.js';
export { makeKey, normalizeKey, parseKey } from './keys.js';
export { AuthCloseReasons, CloseCode } from './protocol.js';
