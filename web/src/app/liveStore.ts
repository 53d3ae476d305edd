/**
 * {@link LiveStore}: the session-wide state the dashboard's widgets read — the alerts and fleet
 * feeds and the connection status — fed by one {@link PulseClient}. Each feed is replaced as a
 * whole on change, so a widget re-renders only when its own feed changed.
 *
 * @packageDocumentation
 */

import type { Alert, ConnectionStatus, PulseClient } from "../client/index.js";
import { criticalArrivals, emptyAlertsFeed, nextExpiry, reduceAlerts, type AlertsAction, type AlertsFeed } from "../model/alertsFeed.js";
import { emptyFleetFeed, reduceFleet, type FleetFeed } from "../model/fleetFeed.js";

export interface LiveState {
  alerts: AlertsFeed;
  fleet: FleetFeed;
  connection: ConnectionStatus;
  /**
   * What a polite live region reads out: new critical alerts, at most once per
   * {@link ANNOUNCE_EVERY_MS} (arrivals meanwhile are counted into the next one).
   */
  announcement: string;
}

/** Shortest time between two announcements of new critical alerts. */
export const ANNOUNCE_EVERY_MS = 10_000;

export interface LiveStoreOptions {
  /** Clock in milliseconds; default `Date.now`. */
  now?: () => number;
  /** Called with critical alerts as they arrive (not those of the first snapshot). */
  onCriticalAlerts?: (alerts: Alert[]) => void;
}

export class LiveStore {
  private state: LiveState;
  private readonly listeners = new Set<() => void>();
  private readonly now: () => number;
  private expiryTimer: ReturnType<typeof setTimeout> | undefined;
  private stops: (() => void)[] = [];
  private lastAnnounced = Number.NEGATIVE_INFINITY;
  private unannounced = 0;
  private announceTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: PulseClient,
    private readonly options: LiveStoreOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.state = { alerts: emptyAlertsFeed, fleet: emptyFleetFeed, connection: client.status, announcement: "" };
  }

  /** Starts following the client; returns a function that stops. */
  start(): () => void {
    this.stops = [
      this.client.on("connection", (status) => this.set({ connection: status })),
      this.client.watch({ type: "alerts" }, (message) => this.onAlerts({ type: "message", message, now: this.now() })),
      this.client.watch({ type: "fleet" }, (message) => this.set({ fleet: reduceFleet(this.state.fleet, message) })),
    ];
    this.set({ connection: this.client.status });
    return () => this.stop();
  }

  private stop(): void {
    for (const stop of this.stops) stop();
    this.stops = [];
    clearTimeout(this.expiryTimer);
    clearTimeout(this.announceTimer);
  }

  getState = (): LiveState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private onAlerts(action: AlertsAction): void {
    const alerts = reduceAlerts(this.state.alerts, action);
    if (alerts === this.state.alerts) return;
    this.set({ alerts });
    this.scheduleExpiry();
    if (action.type === "message") {
      const critical = criticalArrivals(alerts);
      if (critical.length > 0) {
        this.options.onCriticalAlerts?.(critical);
        this.announce(critical.length);
      }
    }
  }

  /** Counts new critical alerts into the next announcement, made at once or when due. */
  private announce(count: number): void {
    this.unannounced += count;
    const wait = this.lastAnnounced + ANNOUNCE_EVERY_MS - this.now();
    if (wait <= 0) {
      this.flushAnnouncement();
    } else if (this.announceTimer === undefined) {
      this.announceTimer = setTimeout(() => this.flushAnnouncement(), wait);
    }
  }

  private flushAnnouncement(): void {
    this.announceTimer = undefined;
    if (this.unannounced === 0) return;
    const n = this.unannounced;
    this.unannounced = 0;
    this.lastAnnounced = this.now();
    this.set({ announcement: n === 1 ? "1 new critical alert" : `${n} new critical alerts` });
  }

  /** Ends highlights when they are due. */
  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    const due = nextExpiry(this.state.alerts);
    if (due === undefined) return;
    this.expiryTimer = setTimeout(() => this.onAlerts({ type: "expire", now: this.now() }), Math.max(0, due - this.now()));
  }

  private set(patch: Partial<LiveState>): void {
    const next = { ...this.state, ...patch };
    if (Object.keys(patch).every((k) => next[k as keyof LiveState] === this.state[k as keyof LiveState])) return;
    this.state = next;
    for (const listener of [...this.listeners]) listener();
  }
}
