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

/** The time in milliseconds, updated once a second. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, current, current);
}

/** "10 s ago" for `timestamp`, kept current; re-renders only when the text changes. */
export function useAgo(timestamp: string | null): string {
  const text = useCallback(() => ago(timestamp, now), [timestamp]);
  return useSyncExternalStore(subscribe, text, text);
}
