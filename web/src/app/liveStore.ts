/**
 * {@link LiveStore}: the session-wide state the dashboard's widgets read — the alerts and fleet
 * feeds and the connection status — fed by one {@link PulseClient}, held in a Zustand store.
 * Each feed is replaced as a whole on change, so a widget selecting one re-renders only when
 * that feed changed. Server data read over REST lives in TanStack Query, not here.
 *
 * @packageDocumentation
 */

import { createStore, type StoreApi } from "zustand/vanilla";

import type { Alert, ConnectionStatus, PulseClient } from "../client/index.js";
import { criticalArrivals, emptyAlertsFeed, nextExpiry, reduceAlerts, type AlertsAction, type AlertsFeed } from "../model/alertsFeed.js";
import { emptyFleetFeed, reduceFleet, type FleetFeed } from "../model/fleetFeed.js";
import { initialFreshness, reduceFreshness, type Freshness, type FreshnessAction } from "../model/freshness.js";
import { watchRefusedPushes } from "./refusedPushes.js";

export interface LiveState {
  alerts: AlertsFeed;
  fleet: FleetFeed;
  connection: ConnectionStatus;
  /**
   * How current the data is off live: when the live connection ended, and whether the REST
   * fallback's polls get through (the connection status says only that they run).
   */
  freshness: Freshness;
  /**
   * What a polite live region reads out: new critical alerts, at most once per
   * {@link ANNOUNCE_EVERY_MS} (arrivals meanwhile are counted into the next one). `null` until
   * the first.
   */
  announcement: Announcement | null;
}

/**
 * One announcement. Each has its own `id`: a screen reader reads a live region out when its
 * content changes, so a second "1 new critical alert" must be rendered as a new node to be heard.
 */
export interface Announcement {
  id: number;
  text: string;
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
  /** The state, for `useStore(store.state, selector)`. */
  readonly state: StoreApi<LiveState>;
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
    this.state = createStore<LiveState>()(() => ({
      alerts: emptyAlertsFeed,
      fleet: emptyFleetFeed,
      connection: client.status,
      freshness: reduceFreshness(initialFreshness, { type: "connection", status: client.status }),
      announcement: null,
    }));
  }

  /** Starts following the client; returns a function that stops. */
  start(): () => void {
    this.stops = [
      this.client.on("connection", (status) => this.onConnection(status)),
      this.client.on("error", (error) => {
        if (error.kind !== "poll_failed") return;
        // The poll's own error ("HTTP 503", "busy") rather than the client's wrapping of it.
        const why = error.cause instanceof Error ? error.cause.message : error.message;
        this.onFreshness({ type: "poll-failed", at: this.now(), error: why });
      }),
      this.client.on("polled", ({ startedAt }) => this.onFreshness({ type: "poll-succeeded", startedAt })),
      this.client.watch({ type: "alerts" }, (message) => this.onAlerts({ type: "message", message, now: this.now() })),
      this.client.watch({ type: "fleet" }, (message) => this.set({ fleet: reduceFleet(this.getState().fleet, message) })),
      // A push the client refused never reaches `watch`: its widget says so all the same.
      watchRefusedPushes(this.client, { type: "alerts" }, (error) => this.onAlerts({ type: "malformed", error })),
      watchRefusedPushes(this.client, { type: "fleet" }, (error) => this.set({ fleet: { ...this.getState().fleet, error } })),
    ];
    this.onConnection(this.client.status);
    return () => this.stop();
  }

  private onConnection(status: ConnectionStatus): void {
    this.set({ connection: status, freshness: reduceFreshness(this.getState().freshness, { type: "connection", status }) });
  }

  private onFreshness(action: FreshnessAction): void {
    this.set({ freshness: reduceFreshness(this.getState().freshness, action) });
  }

  private stop(): void {
    for (const stop of this.stops) stop();
    this.stops = [];
    clearTimeout(this.expiryTimer);
    clearTimeout(this.announceTimer);
    // Forgotten too: a handle left behind would keep a later start from arming its timer.
    this.expiryTimer = undefined;
    this.announceTimer = undefined;
  }

  getState = (): LiveState => this.state.getState();

  subscribe = (listener: () => void): (() => void) => this.state.subscribe(listener);

  private onAlerts(action: AlertsAction): void {
    const alerts = reduceAlerts(this.getState().alerts, action);
    if (alerts === this.getState().alerts) return;
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
    const id = (this.getState().announcement?.id ?? 0) + 1;
    this.set({ announcement: { id, text: n === 1 ? "1 new critical alert" : `${n} new critical alerts` } });
  }

  /** Ends highlights when they are due. */
  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    const due = nextExpiry(this.getState().alerts);
    if (due === undefined) return;
    this.expiryTimer = setTimeout(() => this.onAlerts({ type: "expire", now: this.now() }), Math.max(0, due - this.now()));
  }

  /** Applies `patch`; listeners hear of it only when a part really changed. */
  private set(patch: Partial<LiveState>): void {
    const current = this.getState();
    if (Object.entries(patch).every(([k, v]) => current[k as keyof LiveState] === v)) return;
    this.state.setState(patch);
  }
}
