/**
 * Pacing of the client's channel requests, so that it stays within the gateway's message rate.
 *
 * A gateway takes `PULSE_CLIENT_MSGS_PER_SECOND` messages a second (default 50) with bursts of
 * `PULSE_CLIENT_MSGS_BURST` (default 100) per connection. Beyond that it drops each message with
 * a `rate_limited` error (at most one a second, naming no request), and after more than a burst
 * of refused messages in a row it closes the connection with 4029. A client holding many
 * channels must therefore not send all their subscribes at once as a socket opens.
 *
 * @packageDocumentation
 */

/**
 * Requests sent at once on a fresh connection: under the gateway's default burst (100), leaving
 * room for what is not paced (the opening ping, a token renewal).
 */
export const DEFAULT_PACE_BURST = 80;
/**
 * Requests a second after the burst: under the gateway's default refill (50 a second), leaving
 * room for pings and renewals.
 */
export const DEFAULT_PACE_PER_SECOND = 40;

/** Options of a {@link Pacer}. */
export interface PacerOptions {
  /** A monotonic clock in milliseconds (see `globalMonotonicNow`): it measures the refill. */
  now: () => number;
  /** Default {@link DEFAULT_PACE_BURST}. */
  burst?: number;
  /** Default {@link DEFAULT_PACE_PER_SECOND}. */
  perSecond?: number;
}

/**
 * A token bucket that hands out send slots: {@link Pacer.reserve} says how long to wait before
 * sending. Slots are reserved in order, so requests queued behind others keep their turn.
 */
export class Pacer {
  private readonly now: () => number;
  private readonly burst: number;
  private readonly perSecond: number;
  /** Requests that may go now; below 1, slots already promised to waiting requests. */
  private credit: number;
  /** When `credit` was last brought up to date. */
  private at: number;

  /** Creates a pacer with the full burst available. */
  constructor(options: PacerOptions) {
    this.now = options.now;
    this.burst = Math.max(1, options.burst ?? DEFAULT_PACE_BURST);
    this.perSecond = Math.max(1, options.perSecond ?? DEFAULT_PACE_PER_SECOND);
    this.credit = this.burst;
    this.at = this.now();
  }

  /** Takes the next free slot: the milliseconds to wait before sending (0: send now). */
  reserve(): number {
    this.refill();
    const wait = this.credit >= 1 ? 0 : Math.ceil(((1 - this.credit) * 1000) / this.perSecond);
    this.credit -= 1;
    return wait;
  }

  /**
   * The gateway refused requests: its allowance is spent. The next slot is `ms` from now, the
   * ones after it follow at the steady rate, and slots reserved before are void (whoever held
   * one reserves again).
   */
  restartAfter(ms: number): void {
    this.refill();
    this.credit = 1 - (Math.max(0, ms) * this.perSecond) / 1000;
  }

  /** A new connection: the full burst is available again. */
  reset(): void {
    this.credit = this.burst;
    this.at = this.now();
  }

  private refill(): void {
    const now = this.now();
    const elapsed = Math.max(0, now - this.at);
    this.credit = Math.min(this.burst, this.credit + (elapsed * this.perSecond) / 1000);
    this.at = now;
  }
}
