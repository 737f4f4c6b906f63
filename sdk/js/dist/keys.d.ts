/** A value that names a channel or publisher: the wire takes both forms. */
export type Id = string | number;
/** What a subscription is for: one key of PROTOCOL.md. */
export interface KeySpec {
    dataType: string;
    device: Id;
    channel?: Id | null | undefined;
    publisherId?: Id | null | undefined;
}
/** A KeySpec with its ids as the strings the server uses. */
export interface Key {
    dataType: string;
    device: string;
    channel?: string;
    publisherId?: string;
    /** `dataType:device[:channel[:publisherId]]` */
    key: string;
}
/**
 * normalizeKey turns a KeySpec into the key the server uses: a channel sent
 * as the number 1 and as the string "1" are the same key, empty ids are
 * absent. It throws on a spec without a data type or device.
 */
export declare function normalizeKey(spec: KeySpec): Key;
/** makeKey builds `dataType:device[:channel[:publisherId]]` like the server. */
export declare function makeKey(dataType: string, device: Id, channel?: Id | null, publisherId?: Id | null): string;
/**
 * parseKey splits a subscription key. Device ids may hold ':' only when no
 * channel follows (`device_health:fe80::1` is ambiguous); keys from the
 * server's stream_list use the form this function reads.
 */
export declare function parseKey(key: string): Key | null;
