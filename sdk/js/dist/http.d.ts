import type { Key } from './keys.js';
/** An answer of the REST API that is not 2xx, or a request that got no answer. */
export declare class PearldHTTPError extends Error {
    /** HTTP status; 0 when the server could not be reached or did not answer in time. */
    readonly status: number;
    /** The API's stable error code (`unauthenticated`, `forbidden`, `no_data`, `device_timeout`, ...), or `network`. */
    readonly code: string;
    constructor(status: number, code: string, message: string);
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
/**
 * RestClient calls pearld's REST API with a bearer token. It is what the
 * WebSocket client falls back to, and what control calls use.
 */
export declare class RestClient {
    private readonly base;
    private readonly fetchImpl;
    private readonly timeoutMs;
    constructor(base: string, fetchImpl: FetchLike, timeoutMs: number);
    /** request sends one call and decodes its JSON answer, throwing PearldHTTPError for anything but 2xx. */
    request<T>(method: string, path: string, token: string | null, timeoutMs?: number): Promise<T>;
    /** publisherStatus reads the latest publisher_status of a channel; null when none is known yet. */
    publisherStatus(device: string, channel: string, token: string | null): Promise<PublisherStateAnswer | null>;
    /** events reads the newest stored events matching a filter, oldest first. */
    events(q: {
        type?: string;
        device?: string;
        channel?: string;
        since?: number;
        limit?: number;
    }, token: string | null): Promise<StoredEvent[]>;
    /**
     * snapshot reads the latest state of a key: from the latest-state route
     * for a channel's publisher_status (authoritative, from memory), from
     * the event store for everything else (which holds recent changes only,
     * so a quiet key may have none).
     */
    snapshot(k: Key, token: string | null): Promise<HTTPSnapshot | null>;
    /** control starts or stops all publishers of a channel, or one. */
    control(action: 'start' | 'stop', device: string, channel: string, publisherId: string | undefined, token: string | null, timeoutMs: number): Promise<ControlAnswer>;
}
export declare function errorText(err: unknown): string;
