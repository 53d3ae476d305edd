/**
 * Exponential backoff with full jitter: the delay before retry number `attempt` (counting from
 * 0) is drawn uniformly from `[0, min(cap, base · 2^attempt))`. Spreading retries over the whole
 * window keeps many clients that lost the same gateway from coming back all at once.
 *
 * @packageDocumentation
 */

/** Options of {@link Backoff} and {@link backoffDelay}. */
export interface BackoffOptions {
  /** The window of the first retry, in milliseconds. Default 1000. */
  baseMs?: number;
  /** The largest window, in milliseconds. Default 30000. */
  capMs?: number;
  /** A random source returning numbers in `[0, 1)`. Default `Math.random`. */
  random?: () => number;
}

/** Default window of the first retry: 1 s. */
export const DEFAULT_BACKOFF_BASE_MS = 1_000;
/** Default largest window: 30 s. */
export const DEFAULT_BACKOFF_CAP_MS = 30_000;

/** Exponents above this already exceed any sensible cap; keeps `2 ** attempt` finite. */
const MAX_EXPONENT = 52;

/**
 * The upper bound of the delay before retry `attempt`: `min(cap, base · 2^attempt)`.
 *
 * @throws RangeError when `baseMs` or `capMs` is not a positive finite number.
 */
export function backoffCeiling(
  attempt: number,
  baseMs: number = DEFAULT_BACKOFF_BASE_MS,
  capMs: number = DEFAULT_BACKOFF_CAP_MS,
): number {
  if (!(baseMs > 0) || !Number.isFinite(baseMs)) throw new RangeError(`invalid backoff base ${baseMs}`);
  if (!(capMs > 0) || !Number.isFinite(capMs)) throw new RangeError(`invalid backoff cap ${capMs}`);
  const exponent = Math.min(Math.max(0, Math.floor(attempt) || 0), MAX_EXPONENT);
  return Math.min(capMs, baseMs * 2 ** exponent);
}

/** A full-jitter delay for retry `attempt`: uniform in `[0, backoffCeiling(attempt))`, in ms. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const ceiling = backoffCeiling(attempt, options.baseMs, options.capMs);
  const r = (options.random ?? Math.random)();
  // Guard against a random source that strays outside [0, 1).
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
  return Math.min(Math.floor(unit * ceiling), ceiling);
}

/**
 * Counts consecutive failures and hands out the delay before the next retry. It never gives
 * up: past the cap every delay is drawn from `[0, cap)`.
 */
export class Backoff {
  private failures = 0;
  private readonly options: BackoffOptions;

  /** Creates a backoff with no failures yet. */
  constructor(options: BackoffOptions = {}) {
    // Validate once, up front.
    backoffCeiling(0, options.baseMs, options.capMs);
    this.options = { ...options };
  }

  /** How many delays were handed out since the last {@link Backoff.reset}. */
  get attempt(): number {
    return this.failures;
  }

  /** The delay before the next retry, in milliseconds; each call widens the next window. */
  next(): number {
    const delay = backoffDelay(this.failures, this.options);
    this.failures += 1;
    return delay;
  }

  /** Starts over from the first window, e.g. once a connection proved stable. */
  reset(): void {
    this.failures = 0;
  }
}
