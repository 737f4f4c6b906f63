export const defaultBackoff = { initial: 500, max: 30000, factor: 2, jitter: 0.5 };
/** backoffBounds returns the range the delay of attempt n (from 0) is drawn from. */
export function backoffBounds(attempt, opts = {}) {
    const o = { ...defaultBackoff, ...opts };
    const jitter = Math.min(1, Math.max(0, o.jitter));
    const d = Math.min(o.max, o.initial * Math.pow(o.factor, Math.max(0, attempt)));
    return [d * (1 - jitter), d];
}
/** backoffDelay draws the delay of attempt n; random returns a number in [0, 1). */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
    const [lo, hi] = backoffBounds(attempt, opts);
    return Math.round(lo + (hi - lo) * random());
}
