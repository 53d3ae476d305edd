/**
 * One shared clock for relative times ("10 s ago"): it ticks once a second while something
 * shows it, so a thousand table cells share one timer. A cell reads the clock through
 * {@link useAgo}, which re-renders it only when its text changes — at most every 5 s for a
 * recent time, every minute or hour for older ones — not on every tick.
 *
 * @packageDocumentation
 */

import { useCallback, useSyncExternalStore } from "react";

import { ago } from "../model/format.js";

const TICK_MS = 1_000;
const listeners = new Set<() => void>();
let now = Date.now();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  if (timer === undefined) {
    now = Date.now();
    timer = setInterval(() => {
      now = Date.now();
      for (const l of [...listeners]) l();
    }, TICK_MS);
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

function current(): number {
  return now;
}

/** The time in milliseconds by this browser's clock, updated once a second. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, current, current);
}

/**
 * The server's clock minus this browser's, in milliseconds, as the `Date` of the web service's
 * answers tells it; 0 until one has, and while they agree to within {@link CLOCKS_AGREE_MS}.
 */
let serverOffsetMs = 0;

/** Clocks closer than this count as agreeing: the header's resolution is a second. */
const CLOCKS_AGREE_MS = 1_500;

/**
 * Notes an answer's `Date` header (the server's clock, to the second), for a request sent at
 * `sentAt` and answered at `receivedAt` on this clock. Relative times are counted on the
 * server's clock, which stamped what they show (`last_seen_at`, `created_at`): a browser clock
 * two minutes fast would show a device online a moment ago as "2 min ago".
 */
export function noteServerDate(date: string | null, sentAt: number, receivedAt: number): void {
  const server = date === null ? Number.NaN : Date.parse(date);
  if (Number.isNaN(server)) return;
  // The middle of the header's second against the middle of the request.
  const estimate = server + 500 - (sentAt + receivedAt) / 2;
  serverOffsetMs = Math.abs(estimate) < CLOCKS_AGREE_MS ? 0 : Math.round(estimate);
}

/** The server's clock now, as far as {@link noteServerDate} has told it. */
export function serverNow(browserNow: number = Date.now()): number {
  return browserNow + serverOffsetMs;
}

/**
 * "10 s ago" for `timestamp` (stamped by the server's clock), kept current; re-renders only
 * when the text changes.
 */
export function useAgo(timestamp: string | null): string {
  const text = useCallback(() => ago(timestamp, serverNow(now)), [timestamp]);
  return useSyncExternalStore(subscribe, text, text);
}
