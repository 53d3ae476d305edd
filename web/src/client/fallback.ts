/**
 * REST polling while the socket is down, or while the gateway refuses a held channel for now:
 * a threshold after the connection was lost (or the channel refused), call `poll()` on an
 * interval until the socket is live again with every held channel taken.
 *
 * @packageDocumentation
 */

import { describe, type ClientError } from "./errors.js";
import { TimerSlot, type Timers } from "./timers.js";
import type { DataMessage } from "./types.js";

/** Default time without a live socket before polling starts: 5 s. */
export const DEFAULT_FALLBACK_THRESHOLD_MS = 5_000;
/** Default interval between polls: 30 s. */
export const DEFAULT_FALLBACK_INTERVAL_MS = 30_000;
/** Longest a fallback poll may take before it is aborted. */
export const DEFAULT_POLL_TIMEOUT_MS = 15_000;

/** Where the events of one held event topic stand, for polling them over REST. */
export interface EventsPosition {
  /** The event topic, without the `events:` prefix. */
  topic: string;
  /**
   * The `seq` after which events are wanted (`GET /api/v2/events?topic=…&after=…`); `null` when
   * the client has no position on the topic yet.
   */
  after: number | null;
}

/** What a poll function gets. */
export interface PollContext {
  /**
   * Publishes a message fetched over REST, shaped like the push it stands for (for example the
   * body of `GET /api/v2/fleet`). Calls made after polling stopped, and those for a channel the
   * live socket serves, are ignored, so a slow poll never overwrites live data. Events go through the same `seq` checks as pushed ones:
   * publish them in ascending `seq`, as `GET /api/v2/events` lists them.
   */
  publish(message: DataMessage): void;
  /**
   * The event topics held when the poll started, with their positions. Polled events move the
   * positions on, and the socket resumes from there when it is back.
   */
  events: readonly EventsPosition[];
  /** Aborted as soon as polling stops; pass it to `fetch`. */
  signal: AbortSignal;
}

/**
 * Fetches the current state over REST and publishes it through `context.publish`. The
 * dashboard passes one that reads `/api/v2/alerts?status=OPEN` and `/api/v2/fleet`.
 */
export type PollFunction = (context: PollContext) => Promise<void> | void;

/** Options of a {@link FallbackPoller}. */
export interface FallbackOptions {
  poll: PollFunction;
  /** Where polled messages go (while polling is active). */
  publish: (message: DataMessage) => void;
  /** The event topics to poll and their positions, read at the start of every poll; default none. */
  events?: () => readonly EventsPosition[];
  timers: Timers;
  /** Default {@link DEFAULT_FALLBACK_THRESHOLD_MS}. */
  thresholdMs?: number;
  /** Default {@link DEFAULT_FALLBACK_INTERVAL_MS}. */
  intervalMs?: number;
  /**
   * Longest a poll may take before it is aborted and counted as failed (the next one follows
   * an interval later, as after any failure). Default {@link DEFAULT_POLL_TIMEOUT_MS}.
   */
  timeoutMs?: number;
  /** Called with every failed poll; polling goes on. */
  onError?: (error: ClientError) => void;
  /** Called whenever polling starts or stops. */
  onChange?: (polling: boolean) => void;
  /**
   * Called after each poll that finished without an error while polling was active, with the
   * `now` it started at: the network works (whatever `navigator.onLine` says).
   */
  onSuccess?: (startedAt: number) => void;
  /** Wall clock in milliseconds, for `onSuccess`; default `Date.now`. */
  now?: () => number;
}

/** A fallback poll that got through. */
export interface PollSucceeded {
  /** When it started (ms, the client's `now`): the data it published is at least this new. */
  startedAt: number;
}

/**
 * Starts polling a threshold after {@link FallbackPoller.disconnected} and stops at
 * {@link FallbackPoller.connected}. Polls never overlap: the next one is scheduled an interval
 * after the previous one finished, or was aborted at its deadline (a poll should stop when its
 * `signal` aborts).
 */
export class FallbackPoller {
  private readonly timer: TimerSlot;
  private readonly deadline: TimerSlot;
  private readonly timeoutMs: number;
  private readonly thresholdMs: number;
  private readonly intervalMs: number;
  private waiting = false;
  private active = false;
  /** Aborts the poll in flight and marks its publishes stale. */
  private controller: AbortController | undefined;

  /** Creates an idle poller. */
  constructor(private readonly options: FallbackOptions) {
    this.timer = new TimerSlot(options.timers);
    this.deadline = new TimerSlot(options.timers);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
    this.thresholdMs = options.thresholdMs ?? DEFAULT_FALLBACK_THRESHOLD_MS;
    this.intervalMs = options.intervalMs ?? DEFAULT_FALLBACK_INTERVAL_MS;
  }

  /** True while polling is active (the threshold has passed and the socket is not back). */
  get polling(): boolean {
    return this.active;
  }

  /** The socket is down: start the threshold countdown, unless it runs or polling already does. */
  disconnected(): void {
    if (this.waiting || this.active) return;
    this.waiting = true;
    this.timer.set(() => {
      this.waiting = false;
      this.setActive(true);
      void this.runPoll();
    }, this.thresholdMs);
  }

  /** The socket is live: stop polling and abort a poll in flight. */
  connected(): void {
    this.stop();
  }

  /** Stops everything, e.g. when the app closed the client. */
  stop(): void {
    this.waiting = false;
    this.timer.clear();
    this.deadline.clear();
    this.controller?.abort();
    this.controller = undefined;
    this.setActive(false);
  }

  private setActive(active: boolean): void {
    if (this.active === active) return;
    this.active = active;
    this.options.onChange?.(active);
  }

  private async runPoll(): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    const current = (): boolean => this.controller === controller && !controller.signal.aborted;
    const context: PollContext = {
      publish: (message) => {
        if (current()) this.options.publish(message);
      },
      signal: controller.signal,
      events: this.options.events?.() ?? [],
    };
    // A poll that hangs is aborted, reported, and followed by the next one.
    this.deadline.set(() => {
      if (!current()) return;
      controller.abort();
      this.controller = undefined;
      this.options.onError?.({ kind: "poll_failed", message: `fallback poll did not finish within ${this.timeoutMs} ms` });
      this.scheduleNext();
    }, this.timeoutMs);
    const startedAt = (this.options.now ?? Date.now)();
    let succeeded = false;
    try {
      await this.options.poll(context);
      succeeded = true;
    } catch (error) {
      if (current()) {
        this.options.onError?.({ kind: "poll_failed", message: `fallback poll failed: ${describe(error)}`, cause: error });
      }
    }
    if (!current()) return;
    this.deadline.clear();
    this.controller = undefined;
    this.scheduleNext();
    // Last: the callback may stop polling, which clears the next poll just scheduled.
    if (succeeded) this.options.onSuccess?.(startedAt);
  }

  private scheduleNext(): void {
    this.timer.set(() => {
      if (this.active) void this.runPoll();
    }, this.intervalMs);
  }
}
