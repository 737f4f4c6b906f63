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
export type { ClientOptions, ClientStats, Clock, ConnectionState, FallbackOptions, Subscription, SubscriptionError, TokenSource, Update, WebSocketConstructor, WebSocketLike, } from './client.js';
export { getClient, closeAllClients, defaultUrls } from './shared.js';
export { backoffBounds, backoffDelay, defaultBackoff } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { PearldHTTPError } from './http.js';
export type { ControlAnswer, HTTPSnapshot, PublisherStateAnswer, StoredEvent, FetchLike } from './http.js';
export { allowsDevice, canControl, canRead, decodeToken, globMatch, tokenExpiry } from './jwt.js';
export type { TokenClaims } from './jwt.js';
export { makeKey, normalizeKey, parseKey } from './keys.js';
export type { Id, Key, KeySpec } from './keys.js';
export { AuthCloseReasons, CloseCode } from './protocol.js';
export type * from './protocol.js';
export type { PublisherStatusData, Publisher, PublisherChange, DeviceHealthData, StreamQualityData, PublisherQuality } from './data.js';
