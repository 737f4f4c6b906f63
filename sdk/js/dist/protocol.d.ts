/**
 * The wire contract of pearld's WebSocket hub (PROTOCOL.md, "WebSocket
 * messages"), as TypeScript types. Server frames are typed loosely where the
 * protocol lets them grow: unknown fields are kept, unknown frame types are
 * ignored by the client.
 */
/** The value of a JWT's `permissions` claim. */
export interface Permissions {
    realtime_data?: boolean;
    audio_streams?: boolean;
    admin?: boolean;
    publisher_control?: boolean;
}
/** What `connected.capabilities` tells about the hub. */
export interface Capabilities {
    /** The data types that may be subscribed to, sorted. */
    dataTypes: string[];
    maxSubscriptions?: number;
    maxMessageSize?: number;
    version?: string;
    /**
     * Identifies the server run that numbered `seq`; a client resuming with
     * `since` sends it back so that the server can tell whether its seq still
     * means anything.
     */
    epoch?: number;
}
export interface ConnectedFrame {
    type: 'connected';
    clientId: string;
    user: {
        id?: string;
        name?: string;
        email?: string;
        permissions?: Permissions;
    };
    capabilities: Capabilities;
}
/** The key fields every keyed frame repeats. */
export interface KeyFrameFields {
    subscriptionKey: string;
    dataType: string;
    device: string;
    channel: string | null;
    publisherId: string | null;
}
export interface SubscribedFrame extends KeyFrameFields {
    type: 'subscribed' | 'unsubscribed';
}
/** A `data_update`, or a `cached_data` (the latest known state). */
export interface DataFrame extends KeyFrameFields {
    type: 'data_update' | 'cached_data';
    data: unknown;
    /** ISO-8601, when the source observed the data. */
    timestamp: string;
    cached: boolean;
    /** Present and false on the answer to a resume the server could not serve. */
    recovered?: boolean;
    seq?: number;
}
export interface NoCachedDataFrame {
    type: 'no_cached_data';
    subscriptionKey: string;
    message?: string;
}
export interface ErrorFrame {
    type: 'error';
    code?: string;
    message?: string;
    subscriptionKey?: string;
}
export interface StreamListFrame {
    type: 'stream_list';
    streams: Record<string, {
        subscribers: number;
    }>;
}
export interface PongFrame {
    type: 'pong';
    timestamp?: unknown;
}
export interface BatchFrame {
    type: 'batch';
    events: DataFrame[];
}
export type ServerFrame = ConnectedFrame | SubscribedFrame | DataFrame | NoCachedDataFrame | ErrorFrame | StreamListFrame | PongFrame | BatchFrame;
/** The key fields of client requests. */
export interface KeyRequest {
    dataType: string;
    device: string;
    channel?: string;
    publisherId?: string;
}
export type ClientFrame = ({
    type: 'subscribe';
    since?: number;
    epoch?: number;
} & KeyRequest) | ({
    type: 'unsubscribe';
} & KeyRequest) | ({
    type: 'get_cached_data';
} & KeyRequest) | {
    type: 'list_streams';
} | {
    type: 'ping';
    timestamp?: number;
};
/** Close codes the hub uses. */
export declare const CloseCode: {
    readonly Normal: 1000;
    readonly GoingAway: 1001;
    readonly Abnormal: 1006;
    readonly PolicyViolation: 1008;
    readonly TooBig: 1009;
    readonly TryAgainLater: 1013;
};
/** 1008 reasons that mean the token was refused (PROTOCOL.md, "Authentication"). */
export declare const AuthCloseReasons: readonly string[];
