import type { Permissions } from './protocol.js';
/** The claims of a pearld token that a client may act on. */
export interface TokenClaims {
    sub?: string;
    name?: string;
    email?: string;
    /** Expiry, seconds since the epoch. */
    exp?: number;
    iat?: number;
    permissions?: Permissions;
    /** Device ids or glob patterns (`studio-*`) the token is limited to. */
    devices?: string[];
}
/**
 * decodeToken reads the payload of a JWT without verifying it: the server
 * verifies; a client only needs `exp` to refresh in time and `permissions`
 * to show what the user may do. It returns null for anything that is not a
 * JWT with a JSON object payload.
 */
export declare function decodeToken(token: string | null | undefined): TokenClaims | null;
/** tokenExpiry returns when a token expires, in milliseconds since the epoch, or null when it does not say. */
export declare function tokenExpiry(token: string | null | undefined): number | null;
/** canRead mirrors the server: realtime_data, audio_streams or admin grants reading. */
export declare function canRead(claims: TokenClaims | null): boolean;
/** canControl mirrors the server: publisher_control or admin grants control. */
export declare function canControl(claims: TokenClaims | null, device?: string): boolean;
/**
 * allowsDevice mirrors the server's `devices` claim check: without the
 * claim every device is allowed; patterns use Go's path.Match syntax
 * (`*`, `?`, `[...]`; `*` does not cross `/`).
 */
export declare function allowsDevice(claims: TokenClaims | null, device: string): boolean;
/** globMatch implements the subset of path.Match that device patterns use. */
export declare function globMatch(pattern: string, name: string): boolean;
