/**
 * How current the data on show is when it is not live: when the live connection last ended, and
 * how the REST fallback that stands in for it fares, from the client's `polled` and `poll_failed`
 * reports. The connection status says only whether it polls (`ConnectionStatus.polling`): by it
 * alone, a fallback that fails at every try (a VPN down, a 503 during a deploy) would look like
 * one that works, the numbers frozen with no age on them.
 *
 * @packageDocumentation
 */

import type { ConnectionStatus } from "../client/index.js";

/** Times are milliseconds by this browser's clock, as the client's `since` is. */
export interface Freshness {
  /** The connection is live now. */
  live: boolean;
  /**
   * When the live connection last ended (the `since` of the state that followed it); `null`
   * before it ever was live: then nothing was shown live.
   */
  liveUntil: number | null;
  /** REST polling runs now. */
  polling: boolean;
  /**
   * When the newest poll that got through started (what it read is at least that recent), since
   * polling last started; `null` before one did. Kept when polling stops, for the age of what it
   * read; forgotten when polling starts again, so that it speaks only of this stretch.
   */
  lastPollAt: number | null;
  /** When the polls that failed in a row since the last one got through began failing; `null` while none has. */
  failingSince: number | null;
  /** Why the newest poll failed; `null` with {@link Freshness.failingSince}. */
  pollError: string | null;
}

export const initialFreshness: Freshness = Object.freeze({
  live: false,
  liveUntil: null,
  polling: false,
  lastPollAt: null,
  failingSince: null,
  pollError: null,
});

export type FreshnessAction =
  /** The client's connection status changed. */
  | { type: "connection"; status: ConnectionStatus }
  /** A fallback poll that started at `startedAt` got through. */
  | { type: "poll-succeeded"; startedAt: number }
  /** A fallback poll failed at `at` (the client's `poll_failed`), for `error`. */
  | { type: "poll-failed"; at: number; error: string };

/** Applies a change of the connection or the outcome of a poll. Pure: the input is never changed. */
export function reduceFreshness(state: Freshness, action: FreshnessAction): Freshness {
  switch (action.type) {
    case "connection": {
      const { status } = action;
      let next = state;
      const live = status.state === "live";
      if (live !== state.live) next = { ...next, live, liveUntil: live ? state.liveUntil : status.since };
      if (status.polling !== state.polling) {
        // Started or stopped, nothing of it is failing yet.
        next = { ...next, polling: status.polling, lastPollAt: status.polling ? null : next.lastPollAt, failingSince: null, pollError: null };
      }
      return next;
    }
    case "poll-succeeded":
      return { ...state, lastPollAt: Math.max(state.lastPollAt ?? action.startedAt, action.startedAt), failingSince: null, pollError: null };
    case "poll-failed":
      return { ...state, failingSince: state.failingSince ?? action.at, pollError: action.error };
  }
}

/**
 * Up to when the data on show is known to be current while the connection is not live: when
 * the live connection ended, or when the newest poll that got through started, whichever is
 * later; `null` when neither happened (nothing was read).
 */
export function dataAsOf(freshness: Freshness): number | null {
  const { liveUntil, lastPollAt } = freshness;
  if (liveUntil === null) return lastPollAt;
  return lastPollAt === null ? liveUntil : Math.max(liveUntil, lastPollAt);
}

/** The REST fallback runs, and its newest poll failed. */
export function fallbackFailing(freshness: Freshness): boolean {
  return freshness.polling && freshness.failingSince !== null;
}
