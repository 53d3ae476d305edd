/**
 * The activity feed for the dashboard: the newest events of the `activity` topic over REST, then
 * the live ones from the shared client, with a fresh REST load whenever events were missed.
 *
 * The load is not a TanStack query on purpose: it is one step of the events protocol, ordered
 * against the live events by `seq` and redone after a reset, with the client's position deciding
 * what a load missed. A query cache would hold a second copy of that position and could serve a
 * page older than the events already shown; the feed's reducer numbers the loads instead.
 *
 * @packageDocumentation
 */

import { useCallback, useEffect, useReducer } from "react";

import type { PulseClient } from "../client/index.js";
import { ACTIVITY_ROWS, ACTIVITY_TOPIC, emptyActivityFeed, reduceActivity, retryDelayMs, type ActivityAction, type ActivityFeed } from "../model/activityFeed.js";
import { checkEventsPage } from "../model/validate.js";
import { getJson, HttpError } from "./api.js";
import { watchRefusedPushes } from "./refusedPushes.js";
import { useSession } from "./session.js";

/** `GET /api/v2/events` for the newest rows of the feed. */
export const ACTIVITY_URL = `/api/v2/events?topic=${ACTIVITY_TOPIC}&limit=${ACTIVITY_ROWS}`;

/**
 * Loads the newest events for load number `request` and reports the outcome; afterwards it
 * tells where the client stands, so that events it knows of but the load missed are fetched too.
 */
export async function loadActivity(client: PulseClient, request: number, signal: AbortSignal, dispatch: (action: ActivityAction) => void): Promise<void> {
  let body: unknown;
  try {
    body = await getJson(ACTIVITY_URL, signal);
  } catch (error) {
    if (signal.aborted) return;
    const message = error instanceof Error ? error.message : String(error);
    // A busy server's Retry-After sets the retry's delay: see `retryDelayMs`.
    const retryAfterMs = error instanceof HttpError ? error.retryAfterMs : undefined;
    dispatch({ type: "load-failed", request, error: message, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
    return;
  }
  if (signal.aborted) return;
  const page = checkEventsPage(body, ACTIVITY_TOPIC);
  if (!page.ok) {
    dispatch({ type: "load-failed", request, error: `malformed answer: ${page.error}` });
    return;
  }
  dispatch({ type: "loaded", request, page: page.value });
  const position = client.lastEventSeq(ACTIVITY_TOPIC);
  if (position !== undefined) dispatch({ type: "client-position", request, position });
}

/**
 * Calls `onPosition` with the client's position on the activity topic each time the gateway
 * confirms that subscription; returns a function that stops.
 */
export function watchActivitySubscribed(client: PulseClient, onPosition: (position: number) => void): () => void {
  let stopped = false;
  const stop = client.on("subscription", (status) => {
    const { channel } = status;
    if (status.state !== "subscribed" || channel.type !== "events" || channel.topic !== ACTIVITY_TOPIC) return;
    // The client tells of the new state before it takes the answer's baseline `seq` as its
    // position: read the position once it has handled the whole answer.
    queueMicrotask(() => {
      const position = client.lastEventSeq(ACTIVITY_TOPIC);
      if (!stopped && position !== undefined) onPosition(position);
    });
  });
  return () => {
    stopped = true;
    stop();
  };
}

const ACTIVITY_CHANNEL = { type: "events", topic: ACTIVITY_TOPIC } as const;

/** The activity feed and a retry for a failed load; holds the `activity` events while mounted. */
export function useActivity(): ActivityFeed & { retry: () => void } {
  const { client } = useSession();
  const [feed, dispatch] = useReducer(reduceActivity, emptyActivityFeed);

  // Live events first, so that none published during the first load is lost.
  useEffect(
    () =>
      client.watchEvents(ACTIVITY_TOPIC, {
        onEvent: (message) => dispatch({ type: "event", message }),
        onReset: () => dispatch({ type: "reset" }),
      }),
    [client],
  );

  useEffect(() => watchRefusedPushes(client, ACTIVITY_CHANNEL, (error) => dispatch({ type: "malformed", error })), [client]);

  // A load that ended before the gateway's `subscribed` could not see the baseline it names.
  useEffect(() => watchActivitySubscribed(client, (position) => dispatch({ type: "subscribed", position })), [client]);

  // One load per request number; a newer request aborts the load it replaces.
  const { loadRequest } = feed;
  useEffect(() => {
    const controller = new AbortController();
    void loadActivity(client, loadRequest, controller.signal, dispatch);
    return () => controller.abort();
  }, [client, loadRequest]);

  const retry = useCallback(() => dispatch({ type: "retry" }), []);
  // A failed load is tried again by itself, backing off: live events wait for one.
  const { loadError, loading, failures, retryAfterMs } = feed;
  useEffect(() => {
    if (loadError === null || loading) return;
    const timer = setTimeout(retry, retryDelayMs(failures, retryAfterMs));
    return () => clearTimeout(timer);
  }, [loadError, loading, failures, retryAfterMs, retry]);
  return { ...feed, retry };
}
