/**
 * The application-level heartbeat of an open socket: a `ping` every interval, and a watchdog
 * that declares the socket dead when nothing at all arrived for the timeout.
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
  /** Clock in milliseconds. */
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
    this.schedulePing();
    this.watchdog.set(() => this.check(), this.timeoutMs);
  }

  /** Records that something arrived. Cheap: no timer is touched. */
  seen(): void {
    this.lastSeen = this.options.now();
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
      this.options.sendPing();
      if (this.running) this.schedulePing();
    }, this.intervalMs);
  }

  private check(): void {
    if (!this.running) return;
    const silent = this.options.now() - this.lastSeen;
    if (silent >= this.timeoutMs) {
      this.stop();
      this.options.onTimeout();
    } else {
      this.watchdog.set(() => this.check(), this.timeoutMs - silent);
    }
  }
}
