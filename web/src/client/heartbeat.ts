/**
 * The application-level heartbeat of an open socket: a `ping` every interval, and a watchdog
 * that declares the socket dead when nothing at all arrived for the timeout *and* a ping has
 * gone unanswered for the timeout minus the interval.
 *
 * The second condition matters in background tabs: browsers run their timers there about once
 * a minute, so pings go out late and a quiet socket looks silent for longer than the timeout
 * although it answers every ping it gets. Silence counts only once something was asked.
 *
 * A half-open TCP connection (a laptop waking up, a NAT that forgot the flow) can look open for
 * minutes; the watchdog notices it within the timeout.
 *
 * @packageDocumentation
 */

import { TimerSlot, type Timers } from "./timers.js";

/** Default interval between pings: 20 s. */
export const DEFAULT_PING_INTERVAL_MS = 20_000;
/** Default silence after which a socket counts as dead: 45 s. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 45_000;

/** Options of a {@link Heartbeat}. */
export interface HeartbeatOptions {
  /** Sends one ping. */
  sendPing: () => void;
  /** Called once when nothing arrived for `timeoutMs`; the heartbeat is stopped by then. */
  onTimeout: () => void;
  timers: Timers;
  /**
   * A monotonic clock in milliseconds (see `globalMonotonicNow`): with a wall clock set back an
   * hour, a dead socket would look heard from a moment ago for that hour.
   */
  now: () => number;
  /** Default {@link DEFAULT_PING_INTERVAL_MS}. */
  intervalMs?: number;
  /** Default {@link DEFAULT_HEARTBEAT_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/** Pings on an interval and watches for silence. */
export class Heartbeat {
  private readonly ping: TimerSlot;
  private readonly watchdog: TimerSlot;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private lastSeen = 0;
  /** When the oldest ping not yet followed by anything was sent. */
  private unansweredSince: number | undefined;
  /** When the watchdog's pending check is due. */
  private checkDue = 0;
  private running = false;

  /** Creates a stopped heartbeat. */
  constructor(private readonly options: HeartbeatOptions) {
    this.ping = new TimerSlot(options.timers);
    this.watchdog = new TimerSlot(options.timers);
    this.intervalMs = options.intervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
  }

  /** True between {@link Heartbeat.start} and {@link Heartbeat.stop} or a timeout. */
  get active(): boolean {
    return this.running;
  }

  /** Starts pinging and watching; the socket counts as heard from right now. */
  start(): void {
    this.stop();
    this.running = true;
    this.lastSeen = this.options.now();
    this.unansweredSince = undefined;
    this.schedulePing();
    this.armCheck(this.timeoutMs);
  }

  /** Records that something arrived. Cheap: no timer is touched. */
  seen(): void {
    this.lastSeen = this.options.now();
    this.unansweredSince = undefined;
  }

  /**
   * Pings at once (e.g. when a hidden tab becomes visible again, after timers were throttled),
   * so a dead socket is found within the answer wait instead of at the next scheduled ping.
   */
  pingNow(): void {
    if (!this.running) return;
    this.sendPing();
    this.schedulePing();
    // Sooner, never later: a tab shown again and again must not keep postponing the check.
    const wait = this.answerWaitMs();
    if (!this.watchdog.pending || this.checkDue > this.options.now() + wait) this.armCheck(wait);
  }

  /** Stops pinging and watching. */
  stop(): void {
    this.running = false;
    this.ping.clear();
    this.watchdog.clear();
  }

  private schedulePing(): void {
    this.ping.set(() => {
      if (!this.running) return;
      this.sendPing();
      if (this.running) this.schedulePing();
    }, this.intervalMs);
  }

  private sendPing(): void {
    this.unansweredSince ??= this.options.now();
    this.options.sendPing();
  }

  /** How long a ping may go unanswered: the timeout minus the interval, at least 1 s. */
  private answerWaitMs(): number {
    return Math.max(1_000, this.timeoutMs - this.intervalMs);
  }

  private check(): void {
    if (!this.running) return;
    const now = this.options.now();
    const silent = now - this.lastSeen;
    const waited = this.unansweredSince === undefined ? 0 : now - this.unansweredSince;
    const answerWait = this.answerWaitMs();
    if (silent >= this.timeoutMs && this.unansweredSince !== undefined && waited >= answerWait) {
      this.stop();
      this.options.onTimeout();
      return;
    }
    const untilSilent = this.timeoutMs - silent;
    const untilUnanswered = this.unansweredSince === undefined ? answerWait : answerWait - waited;
    this.armCheck(Math.max(untilSilent, untilUnanswered, 1));
  }

  private armCheck(ms: number): void {
    this.checkDue = this.options.now() + ms;
    this.watchdog.set(() => this.check(), ms);
  }
}
