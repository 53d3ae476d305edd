/**
 * The alerts feed: the newest valid `alerts` snapshot, the error of a malformed one, and which
 * rows are new enough to be highlighted.
 *
 * A row is new when its alert was not in the previous snapshot, unless that snapshot was capped
 * and the alert is listed after its last row: then it moved up into the list as newer alerts
 * closed (or a larger cap showed it), and was open before. The first snapshot highlights
 * nothing: everything in it would be "new", which tells the user nothing.
 *
 * @packageDocumentation
 */

import type { Alert, AlertsMessage } from "../client/index.js";
import { reuseUnchanged } from "./reuse.js";
import { checkAlerts } from "./validate.js";

/** How long a new row stays highlighted. */
export const HIGHLIGHT_MS = 4_000;

/** Severity from which an alert counts as critical (dashboard convention of the contract). */
export const CRITICAL_SEVERITY = 4;

export interface AlertsFeed {
  /** The newest valid snapshot; `null` until one arrived. */
  message: AlertsMessage | null;
  /** Why the newest message was refused; cleared by the next valid one. */
  error: string | null;
  /** Highlighted alert ids, each with the time (ms) its highlight ends. */
  fresh: ReadonlyMap<number, number>;
  /** Alerts that became new with the last accepted message (for notifications). */
  arrived: readonly Alert[];
}

export const emptyAlertsFeed: AlertsFeed = Object.freeze({
  message: null,
  error: null,
  fresh: new Map<number, number>(),
  arrived: [],
});

export type AlertsAction =
  | { type: "message"; message: unknown; now: number }
  /** The client refused an alerts push whose envelope broke the contract; `error` says why. */
  | { type: "malformed"; error: string }
  | { type: "expire"; now: number };

/** Applies a received message or the passing of time. Pure: the input is never changed. */
export function reduceAlerts(state: AlertsFeed, action: AlertsAction): AlertsFeed {
  if (action.type === "expire") {
    const fresh = unexpired(state.fresh, action.now);
    return fresh.size === state.fresh.size ? state : { ...state, fresh };
  }
  if (action.type === "malformed") return { ...state, error: action.error, arrived: [] };
  const checked = checkAlerts(action.message);
  if (!checked.ok) return { ...state, error: checked.error, arrived: [] };
  const previous = state.message;
  // Alerts that did not change keep their object, so memoised rows skip them.
  const next = { ...checked.value, alerts: reuseUnchanged(previous?.alerts, checked.value.alerts, (a) => a.alert_id) };
  const fresh = new Map(unexpired(state.fresh, action.now));
  const arrived: Alert[] = [];
  if (previous) {
    const known = new Set(previous.alerts.map((a) => a.alert_id));
    const capped = previous.total_open > previous.alerts.length;
    const last = previous.alerts.at(-1);
    const cameIntoView = (a: Alert) => capped && last !== undefined && listedAfter(a, last);
    for (const a of next.alerts) {
      if (!known.has(a.alert_id) && !fresh.has(a.alert_id) && !cameIntoView(a)) {
        fresh.set(a.alert_id, action.now + HIGHLIGHT_MS);
        arrived.push(a);
      }
    }
  }
  // Forget highlights of alerts that left the list.
  const listed = new Set(next.alerts.map((a) => a.alert_id));
  for (const id of [...fresh.keys()]) if (!listed.has(id)) fresh.delete(id);
  return { message: next, error: null, fresh, arrived };
}

/** Whether `a` comes after `b` in a snapshot's order: newest first, then by id, highest first. */
function listedAfter(a: Alert, b: Alert): boolean {
  const at = Date.parse(a.created_at);
  const bt = Date.parse(b.created_at);
  return at < bt || (at === bt && a.alert_id < b.alert_id);
}

function unexpired(fresh: ReadonlyMap<number, number>, now: number): ReadonlyMap<number, number> {
  let changed = false;
  const kept = new Map<number, number>();
  for (const [id, until] of fresh) {
    if (until > now) kept.set(id, until);
    else changed = true;
  }
  return changed ? kept : fresh;
}

/** When the next highlight ends, or `undefined` when nothing is highlighted. */
export function nextExpiry(feed: AlertsFeed): number | undefined {
  let soonest: number | undefined;
  for (const until of feed.fresh.values()) if (soonest === undefined || until < soonest) soonest = until;
  return soonest;
}

/** The critical alerts among those that just arrived. */
export function criticalArrivals(feed: AlertsFeed): Alert[] {
  return feed.arrived.filter((a) => a.severity >= CRITICAL_SEVERITY);
}

/** How many open alerts are critical, and how many of those the capped list leaves out. */
export interface CriticalOpen {
  count: number;
  unlisted: number;
}

/**
 * The critical open alerts of `message`. Counted from its `open_by_severity`, which covers every
 * open alert: a critical alert older than the newest listed ones still counts. A message without
 * it (a poller that predates it) is counted from its list.
 */
export function criticalOpen(message: AlertsMessage): CriticalOpen {
  const listed = message.alerts.filter((a) => a.severity >= CRITICAL_SEVERITY).length;
  const bySeverity = message.open_by_severity;
  if (!bySeverity || Object.keys(bySeverity).length === 0) return { count: listed, unlisted: 0 };
  let count = 0;
  for (const [severity, n] of Object.entries(bySeverity)) {
    if (Number(severity) >= CRITICAL_SEVERITY && n !== undefined) count += n;
  }
  // Counts and list are read in one query; a count below the list can only be a broken message.
  count = Math.max(count, listed);
  return { count, unlisted: count - listed };
}
