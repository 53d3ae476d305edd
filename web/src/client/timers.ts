/**
 * The timer functions the client uses, injectable so tests can drive time.
 *
 * @packageDocumentation
 */

/** An opaque timer handle. */
export type TimerHandle = unknown;

/** `setTimeout` / `clearTimeout`, as the client needs them. */
export interface Timers {
  /** Runs `callback` once after `ms` milliseconds. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The global timers, looked up at each call (so fake timers installed later take effect).
 */
export const globalTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]),
};

/** The global clock in milliseconds, looked up at each call. */
export const globalNow = (): number => Date.now();

/**
 * A monotonic clock in milliseconds (`performance.now()`, else `Date.now()`), looked up at each
 * call. Measured waits use it: unlike the wall clock it never jumps when the system clock is set
 * (by hand or by a time sync), which would stretch a wait by as much as the clock went back.
 */
export const globalMonotonicNow = (): number => {
  const performance = (globalThis as { performance?: { now?: () => number } }).performance;
  return typeof performance?.now === "function" ? performance.now() : Date.now();
};

/**
 * The longest wait `setTimeout` holds, 2^31 - 1 ms (about 24.8 days): browsers and Node run a
 * longer one at once, which would turn a long wait (a year-long token's renewal) into a loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A single timer slot: arming it again replaces the pending callback. */
export class TimerSlot {
  private handle: TimerHandle | undefined;
  private armed = false;

  /** Creates an empty slot using `timers`. */
  constructor(private readonly timers: Timers) {}

  /** True while a callback is pending. */
  get pending(): boolean {
    return this.armed;
  }

  /** Runs `callback` after `ms` (at most {@link MAX_TIMER_MS}), cancelling whatever was pending. */
  set(callback: () => void, ms: number): void {
    this.clear();
    this.armed = true;
    this.handle = this.timers.setTimeout(() => {
      this.armed = false;
      this.handle = undefined;
      callback();
    }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
  }

  /** Cancels the pending callback, if any. */
  clear(): void {
    if (!this.armed) return;
    this.timers.clearTimeout(this.handle);
    this.armed = false;
    this.handle = undefined;
  }
}
