import type { Clock, TokenSource } from './types.js';
import { PearldHTTPError, errorText } from './http.js';
import { decodeToken, tokenExpiry } from './jwt.js';

/**
 * Tokens holds a client's JWT and refreshes it through a TokenSource:
 * shortly before it expires (from its `exp`), when it is missing or
 * expiring as a connection opens, and when the server refuses it.
 * Concurrent callers share one call of the source.
 */
export class Tokens {
  private current: string | null;
  private source: TokenSource | undefined;
  private pending: Promise<string | null> | null = null;
  private timer: unknown = null;
  private running = false;

  constructor(
    token: string | null,
    source: TokenSource | undefined,
    private readonly clock: Clock,
    private readonly refreshBeforeMs: number,
    /** Called when the token changed. */
    private readonly changed: (token: string | null) => void,
    /** Called when the source failed. */
    private readonly failed: (message: string) => void,
  ) {
    this.current = token;
    this.source = source;
  }

  get token(): string | null {
    return this.current;
  }

  get hasSource(): boolean {
    return this.source !== undefined;
  }

  setSource(fn: TokenSource | undefined): void {
    this.source = fn;
    this.schedule();
  }

  /** set replaces the token and reports whether it changed. */
  set(token: string | null): boolean {
    if (token === this.current) return false;
    this.current = token;
    this.schedule();
    this.changed(token);
    return true;
  }

  /** start arms the refresh timer; stop disarms it. */
  start(): void {
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    this.clear();
  }

  /**
   * fresh returns the token to use, asking the source for a new one when
   * forced, when there is none, or when it is within its refresh window.
   */
  async fresh(force: boolean): Promise<string | null> {
    const get = this.source;
    if (!get) return this.current;
    if (!force && this.current && !this.due(this.current)) return this.current;
    if (!this.pending) {
      this.pending = (async () => {
        try {
          const t = await get();
          if (t) this.set(t);
        } catch (err) {
          this.failed('getToken: ' + errorText(err));
        } finally {
          this.pending = null;
        }
        return this.current;
      })();
    }
    return this.pending;
  }

  /** withToken runs a REST call, refreshing the token once when it answers 401. */
  async withToken<T>(fn: (token: string | null) => Promise<T>): Promise<T> {
    const token = await this.fresh(false);
    try {
      return await fn(token);
    } catch (err) {
      if (!(err instanceof PearldHTTPError) || err.status !== 401 || !this.source) throw err;
      const t = await this.fresh(true);
      if (!t || t === token) throw err;
      return fn(t);
    }
  }

  /**
   * refreshAt returns when a token should be replaced: refreshBeforeMs
   * before `exp`, or at three quarters of its lifetime when that is
   * shorter; null when it has no `exp`.
   */
  refreshAt(token: string): number | null {
    const exp = tokenExpiry(token);
    if (exp === null) return null;
    const iat = decodeToken(token)?.iat;
    let lead = this.refreshBeforeMs;
    if (typeof iat === 'number') lead = Math.min(lead, Math.max(0, (exp - iat * 1000) / 4));
    return exp - lead;
  }

  private due(token: string): boolean {
    const at = this.refreshAt(token);
    return at !== null && this.clock.now() >= at;
  }

  private clear(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.clear();
    if (!this.running || !this.source || !this.current) return;
    const at = this.refreshAt(this.current);
    const exp = tokenExpiry(this.current);
    if (at === null || exp === null) return;
    const now = this.clock.now();
    if (now >= exp) return; // expired: the next connect or request asks for a new one
    // Already due (the source returned a token close to its expiry): try
    // again a little later rather than in a loop.
    const delay = at > now ? at - now : Math.min(10_000, exp - now);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      const before = this.current;
      void this.fresh(true).then((t) => {
        if (t === before) this.schedule();
      });
    }, delay);
  }
}
