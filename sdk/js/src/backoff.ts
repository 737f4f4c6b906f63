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

export const defaultBackoff: Required<BackoffOptions> = { initial: 500, max: 30_000, factor: 2, jitter: 0.5 };

/** backoffBounds returns the range the delay of attempt n (from 0) is drawn from. */
export function backoffBounds(attempt: number, opts: BackoffOptions = {}): [number, number] {
  const o = { ...defaultBackoff, ...opts };
  const jitter = Math.min(1, Math.max(0, o.jitter));
  const d = Math.min(o.max, o.initial * Math.pow(o.factor, Math.max(0, attempt)));
  return [d * (1 - jitter), d];
}

/** backoffDelay draws the delay of attempt n; random returns a number in [0, 1). */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const [lo, hi] = backoffBounds(attempt, opts);
  return Math.round(lo + (hi - lo) * random());
}
