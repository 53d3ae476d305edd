/**
 * One shared clock for relative times ("12 s ago"): it ticks once a second while something
 * shows it, so a thousand table cells share one timer.
 *
 * @packageDocumentation
 */

import { useSyncExternalStore } from "react";

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
