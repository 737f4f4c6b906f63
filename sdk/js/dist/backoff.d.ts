/** How reconnection attempts are spaced. */
export interface BackoffOptions {
    /** Delay before the first retry, in ms. Default 500. */
    initial?: number;
    /** Upper bound of the delay, in ms. Default 30000. */
    max?: number;
    /** Growth per attempt. Default 2. */
    factor?: number;
    /**
     * Share of the delay that is random, from 0 to 1: attempt n waits a
     * uniformly random time in [d·(1-jitter), d] where d = min(max,
     * initial·factor^n). Jitter spreads the reconnects of many dashboards
     * after a server restart. Default 0.5.
     */
    jitter?: number;
}
export declare const defaultBackoff: Required<BackoffOptions>;
/** backoffBounds returns the range the delay of attempt n (from 0) is drawn from. */
export declare function backoffBounds(attempt: number, opts?: BackoffOptions): [number, number];
/** backoffDelay draws the delay of attempt n; random returns a number in [0, 1). */
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;
