/**
 * Server data read over REST, held by TanStack Query: one cache for the session, requests
 * aborted when nothing needs them any more, and retries only where another try can help.
 * Live pushes are not server data in this sense: they come through the client and the live
 * store, and merge with what a query loaded.
 *
 * @packageDocumentation
 */

import { QueryClient } from "@tanstack/react-query";

import { backoffCeiling, type Alert } from "../client/index.js";
import { CRITICAL_SEVERITY } from "../model/alertsFeed.js";
import { MAX_READINGS } from "../model/readings.js";
import { checkAlertPage, checkDeviceDetail, checkReadingPage, type DeviceDetail, type Reading } from "../model/validate.js";
import { getJson, HttpError, TimeoutError } from "./api.js";

/**
 * Longest `Retry-After` a read waits out by itself. A server asking for longer gets the error
 * shown at once, with its retry: a page that sits loading for minutes says less than that.
 */
export const MAX_RETRY_AFTER_MS = 30_000;

/**
 * Whether a read that failed `failures` times with `error` is tried again by itself: twice at
 * most. A 4xx answer will not change on a second try (a 401 has already ended the session),
 * except a 429, which says to come back later, as a 503 `busy` does; a read that ran out its
 * deadline is shown at once with its retry, not after two more deadlines.
 */
export function isWorthRetrying(failures: number, error: unknown): boolean {
  if (error instanceof TimeoutError || failures >= 2) return false;
  if (!(error instanceof HttpError)) return true;
  if (error.retryAfterMs !== undefined && error.retryAfterMs > MAX_RETRY_AFTER_MS) return false;
  return error.status >= 500 || error.status === 429;
}

/**
 * How long after `failures` failures (0 after the first) a read is tried again: TanStack's own
 * backoff (1 s, 2 s, …), or the wait the answer's `Retry-After` asked for when that is longer. A
 * server that is busy or limiting this user said when it can answer: asking sooner only adds
 * to its load, and gets refused again.
 */
export function retryDelay(failures: number, error: unknown): number {
  const backoff = backoffCeiling(failures, 1_000, 30_000);
  const asked = error instanceof HttpError ? error.retryAfterMs : undefined;
  return asked === undefined ? backoff : Math.max(backoff, Math.min(asked, MAX_RETRY_AFTER_MS));
}

/** The session's query cache. */
export function newQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // Pushes keep what is shown current; a refetch on focus would only repeat them.
        refetchOnWindowFocus: false,
        retry: isWorthRetrying,
        retryDelay,
      },
    },
  });
}

/**
 * A device's detail, and when it was asked for (ms, this clock). Of two answers, the one asked
 * for later is the newer, whichever came first: it was read after the other was asked for.
 */
export interface AskedDevice {
  detail: DeviceDetail;
  askedAt: number;
}

/** A device's detail and its newest readings (oldest first), and when they were asked for. */
export interface DeviceHistory extends AskedDevice {
  readings: Reading[];
}

function deviceUrl(deviceId: string): string {
  return `/api/v2/devices/${encodeURIComponent(deviceId)}`;
}

/** `GET /api/v2/devices/{id}`, checked. */
async function readDevice(deviceId: string, signal: AbortSignal): Promise<DeviceDetail> {
  const d = checkDeviceDetail(await getJson(deviceUrl(deviceId), signal));
  if (!d.ok) throw new Error(`malformed device: ${d.error}`);
  return d.value;
}

/** The query of a device's history, for `useQuery`. */
export function deviceHistoryQuery(deviceId: string) {
  return {
    queryKey: ["device-history", deviceId] as const,
    queryFn: async ({ signal }: { signal: AbortSignal }): Promise<DeviceHistory> => {
      const askedAt = Date.now();
      const [detail, page] = await Promise.all([
        readDevice(deviceId, signal),
        getJson(`${deviceUrl(deviceId)}/telemetry?limit=${MAX_READINGS}`, signal),
      ]);
      const r = checkReadingPage(page);
      if (!r.ok) throw new Error(`malformed history: ${r.error}`);
      return { detail, readings: r.value, askedAt };
    },
    // A page opened again shows the readings it had at once, and reloads them behind.
    staleTime: 0,
  };
}

/** How often, at most, the status of a device the fleet push leaves out is read again. */
export const UNLISTED_STATUS_EVERY_MS = 30_000;

/**
 * A device's status read again, for `useQuery` with `refetch`, for a device the capped fleet
 * push leaves out (the healthiest are): nothing pushes its status, and a reading arriving may
 * change it. The page reads it again as readings keep coming, at most every
 * {@link UNLISTED_STATUS_EVERY_MS}; the last answer stays until the next one.
 */
export function deviceStatusQuery(deviceId: string) {
  return {
    queryKey: ["device-status", deviceId] as const,
    queryFn: async ({ signal }: { signal: AbortSignal }): Promise<AskedDevice> => {
      const askedAt = Date.now();
      return { detail: await readDevice(deviceId, signal), askedAt };
    },
    enabled: false,
  };
}

/** Most open critical alerts read at once for the ones a capped alerts push leaves out. */
export const CRITICAL_ALERTS_LIMIT = 100;

/**
 * The newest open critical alerts, for `useQuery`: the ones a capped alerts push leaves out are
 * among them. `counts` (the pushed critical counts) is part of the key, so the list is read
 * again whenever a push says how many there are has changed.
 */
export function openCriticalAlertsQuery(counts: { count: number; unlisted: number }) {
  return {
    queryKey: ["open-critical-alerts", counts.count, counts.unlisted] as const,
    queryFn: async ({ signal }: { signal: AbortSignal }): Promise<Alert[]> => {
      const body = await getJson(`/api/v2/alerts?status=OPEN&min_severity=${CRITICAL_SEVERITY}&limit=${CRITICAL_ALERTS_LIMIT}`, signal);
      const page = checkAlertPage(body);
      if (!page.ok) throw new Error(`malformed alerts: ${page.error}`);
      return page.value;
    },
    staleTime: 0,
  };
}
