/**
 * The activity feed: the newest events of the `activity` topic, from a REST load merged with the
 * live events, each shown once, none missing.
 *
 * Event `seq`s of a topic go 1, 2, 3, …, so one number says what the feed has accounted for:
 * `known`, the `seq` up to which every event was either loaded or received. A live event at or
 * below it is a duplicate of what REST returned; one past `known + 1` follows a hole, and so does
 * a reset from the client: both ask for a fresh REST load, which fills the hole (after a failed
 * load, the retry's, when its backoff has passed). Live events that arrive while a load runs wait
 * for it, and are applied against what it returned.
 *
 * @packageDocumentation
 */

import { checkActivityEvent, type ActivityEntry, type EventsPage } from "./validate.js";

/** The event topic the feed follows. */
export const ACTIVITY_TOPIC = "activity";
/** Rows the feed keeps and shows, newest first. */
export const ACTIVITY_ROWS = 50;
/**
 * Live events kept while a load runs. Past it the oldest are dropped: they are older than what
 * the load returns anyway, or the hole they leave asks for another load.
 */
export const MAX_PENDING = 1_000;

export interface ActivityFeed {
  /** Newest first, at most {@link ACTIVITY_ROWS}. */
  entries: readonly ActivityEntry[];
  /** Every event up to this `seq` is accounted for; `null` until the first load is in. */
  known: number | null;
  /** Number of the REST load wanted now; a new number asks for a new load. */
  loadRequest: number;
  /** The load numbered {@link ActivityFeed.loadRequest} is running. */
  loading: boolean;
  /** The running load was asked for because the client was ahead of the last one. */
  catchingUp: boolean;
  /** Live events received while loading, in arrival order. */
  pending: readonly unknown[];
  /** Why the last load failed; cleared by the next one that succeeds. */
  loadError: string | null;
  /** Loads failed in a row: the next is tried by itself after {@link retryDelayMs} of it. */
  failures: number;
  /** The wait the last failed load's answer asked for (`Retry-After`), in ms; `null` without one. */
  retryAfterMs: number | null;
  /** Why the newest live event was refused; cleared by the next valid one. */
  eventError: string | null;
}

/** A feed that has loaded nothing and wants its first load. */
export const emptyActivityFeed: ActivityFeed = Object.freeze({
  entries: [],
  known: null,
  loadRequest: 1,
  loading: true,
  catchingUp: false,
  pending: [],
  loadError: null,
  failures: 0,
  retryAfterMs: null,
  eventError: null,
});

/** Longest `Retry-After` the feed waits out before it loads again: past it, it asks anyway. */
export const MAX_FEED_RETRY_AFTER_MS = 5 * 60_000;

/**
 * How long after `failures` failed loads in a row the next is tried by itself: 2 s, doubling
 * up to a minute. Live events wait for a load, so the feed must not wait for the user's click.
 * The last answer's `Retry-After` (`retryAfterMs`) is waited out when it is longer, up to
 * {@link MAX_FEED_RETRY_AFTER_MS}: a busy server said when it can answer, and a load sooner would
 * only be refused again.
 */
export function retryDelayMs(failures: number, retryAfterMs: number | null = null): number {
  const backoff = Math.min(60_000, 2_000 * 2 ** Math.max(0, failures - 1));
  return retryAfterMs === null ? backoff : Math.max(backoff, Math.min(retryAfterMs, MAX_FEED_RETRY_AFTER_MS));
}

export type ActivityAction =
  /** A live event, as the client delivered it. */
  | { type: "event"; message: unknown }
  /** The client announced missed events: load again. */
  | { type: "reset" }
  /** The client refused a live event whose envelope broke the contract; `error` says why. */
  | { type: "malformed"; error: string }
  | { type: "loaded"; request: number; page: EventsPage }
  /** `retryAfterMs`: the wait the answer's `Retry-After` asked for, when it named one. */
  | { type: "load-failed"; request: number; error: string; retryAfterMs?: number }
  /** The user asked to try a failed load again. */
  | { type: "retry" }
  /**
   * After a load: the client's position on the topic. Ahead of `known`, the events between were
   * announced by the gateway as a baseline, after the load read the database: load once more.
   */
  | { type: "client-position"; request: number; position: number }
  /**
   * The gateway confirmed the subscription, and the client stands at `position`. The first load
   * usually ends before that answer, whose baseline `seq` it could not compare with: compare now.
   */
  | { type: "subscribed"; position: number };

/** Applies a live event, a reset or the end of a load. Pure: the input is never changed. */
export function reduceActivity(state: ActivityFeed, action: ActivityAction): ActivityFeed {
  switch (action.type) {
    case "malformed":
      return { ...state, eventError: action.error };
    case "event":
      if (state.loading || state.known === null) {
        const pending = [...state.pending, action.message];
        return { ...state, pending: pending.length > MAX_PENDING ? pending.slice(-MAX_PENDING) : pending };
      }
      return applyEvent(state, action.message);
    case "reset":
      return reloadWanted(state);
    case "retry":
      return state.loading ? state : { ...requestLoad(state), loadError: null };
    case "loaded": {
      if (action.request !== state.loadRequest || !state.loading) return state;
      // REST reads the database, which is ahead of every event relayed from it: a newest `seq`
      // below what the feed knows means the topic started over, and the page replaces all.
      const restarted = state.known !== null && action.page.lastSeq < state.known;
      const loaded: ActivityFeed = {
        ...state,
        entries: merge(restarted ? [] : state.entries, action.page.events),
        known: restarted ? action.page.lastSeq : Math.max(state.known ?? 0, action.page.lastSeq),
        loading: false,
        pending: [],
        loadError: null,
        failures: 0,
        retryAfterMs: null,
        eventError: action.page.malformed ?? state.eventError,
      };
      return state.pending.reduce<ActivityFeed>(
        (feed, message) => (feed.loading ? { ...feed, pending: [...feed.pending, message] } : applyEvent(feed, message)),
        loaded,
      );
    }
    case "load-failed":
      if (action.request !== state.loadRequest || !state.loading) return state;
      return {
        ...state,
        loading: false,
        catchingUp: false,
        loadError: action.error,
        failures: state.failures + 1,
        retryAfterMs: action.retryAfterMs ?? null,
      };
    case "client-position":
      return action.request === state.loadRequest ? catchUp(state, action.position) : state;
    case "subscribed":
      // A load that runs compares with the client's position when it ends.
      return catchUp(state, action.position);
  }
}

/**
 * Loads once more when the client is ahead of what the feed knows: the events between were
 * announced as a baseline, after the last load read the database. Only once in a row, so that a
 * position the database never reaches cannot start a loop of loads.
 */
function catchUp(state: ActivityFeed, position: number): ActivityFeed {
  if (state.loading || state.catchingUp) return state;
  if (state.known === null || position <= state.known) return state;
  const next = reloadWanted(state);
  return next === state ? state : { ...next, catchingUp: true };
}

/**
 * Missed events (a hole, a reset, a baseline ahead) want a fresh load, at once, unless a load
 * failed and no other has succeeded since: the retry timer (2 s, doubling up to a minute) or the
 * user's Retry will load, and that load fills every hole found meanwhile (`known` has moved past
 * them). A new request here would cancel the timer, and during an alert storm each event past a
 * hole would send a request of its own to a server that is already failing.
 */
function reloadWanted(state: ActivityFeed): ActivityFeed {
  return state.loadError === null ? requestLoad(state) : state;
}

/** Asks for a new load; live events wait for it. */
function requestLoad(state: ActivityFeed): ActivityFeed {
  return { ...state, loadRequest: state.loadRequest + 1, loading: true, catchingUp: false };
}

function applyEvent(state: ActivityFeed, message: unknown): ActivityFeed {
  const checked = checkActivityEvent(message, ACTIVITY_TOPIC);
  const seq = checked.ok ? checked.value.seq : seqOf(message);
  if (seq === undefined) return { ...state, eventError: checked.ok ? null : checked.error };
  const known = state.known ?? 0;
  if (seq <= known) return state;
  let next: ActivityFeed = { ...state, known: seq };
  if (checked.ok) {
    next = { ...next, entries: merge(state.entries, [checked.value]), eventError: null };
  } else {
    // A malformed event still takes its place in the sequence: it is no hole.
    next = { ...next, eventError: checked.error };
  }
  return seq > known + 1 ? reloadWanted(next) : next;
}

/** The `seq` of an event that failed its check, if it has a usable one. */
function seqOf(message: unknown): number | undefined {
  const seq = typeof message === "object" && message !== null ? (message as { seq?: unknown }).seq : undefined;
  return typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
}

/** `current` and `added` by `seq`, each once (the newer copy wins), newest first, capped. */
function merge(current: readonly ActivityEntry[], added: readonly ActivityEntry[]): readonly ActivityEntry[] {
  if (added.length === 0) return current;
  const bySeq = new Map<number, ActivityEntry>();
  for (const entry of current) bySeq.set(entry.seq, entry);
  for (const entry of added) bySeq.set(entry.seq, entry);
  return [...bySeq.values()].sort((a, b) => b.seq - a.seq).slice(0, ACTIVITY_ROWS);
}
