import type { Clock, TokenSource } from './types.js';
/**
 * Tokens holds a client's JWT and refreshes it through a TokenSource:
 * shortly before it expires (from its `exp`), when it is missing or
 * expiring as a connection opens, and when the server refuses it.
 * Concurrent callers share one call of the source.
 */
export declare class Tokens {
    private readonly clock;
    private readonly refreshBeforeMs;
    /** Called when the token changed. */
    private readonly changed;
    /** Called when the source failed. */
    private readonly failed;
    private current;
    private source;
    private pending;
    private timer;
    private running;
    constructor(token: string | null, source: TokenSource | undefined, clock: Clock, refreshBeforeMs: number, 
    /** Called when the token changed. */
    changed: (token: string | null) => void, 
    /** Called when the source failed. */
    failed: (message: string) => void);
    get token(): string | null;
    get hasSource(): boolean;
    setSource(fn: TokenSource | undefined): void;
    /** set replaces the token and reports whether it changed. */
    set(token: string | null): boolean;
    /** start arms the refresh timer; stop disarms it. */
    start(): void;
    stop(): void;
    /**
     * fresh returns the token to use, asking the source for a new one when
     * forced, when there is none, or when it is within its refresh window.
     */
    fresh(force: boolean): Promise<string | null>;
    /** withToken runs a REST call, refreshing the token once when it answers 401. */
    withToken<T>(fn: (token: string | null) => Promise<T>): Promise<T>;
    /**
     * refreshAt returns when a token should be replaced: refreshBeforeMs
     * before `exp`, or at three quarters of its lifetime when that is
     * shorter; null when it has no `exp`.
     */
    refreshAt(token: string): number | null;
    private due;
    private clear;
    private schedule;
}
