/**
 * A device's readings for the device page: REST history and live telemetry merged into one
 * series, oldest first, without duplicates, capped; and the numeric columns a chart plots.
 *
 * @packageDocumentation
 */

import type { Reading } from "./validate.js";

/** Most readings kept (and plotted) per device. */
export const MAX_READINGS = 600;

/** Most metrics charted; readings can carry any keys. */
export const MAX_CHARTED_METRICS = 6;

/**
 * `existing` and `incoming` merged: sorted by time, one reading per timestamp (the incoming one
 * wins), at most `cap` of the newest. Returns `existing` itself when nothing changed, so a
 * duplicate push does not re-render.
 */
export function mergeReadings(existing: readonly Reading[], incoming: readonly Reading[], cap = MAX_READINGS): readonly Reading[] {
  if (incoming.length === 0) return existing;
  const last = existing[existing.length - 1];
  // The common case: one live reading newer than everything held.
  if (incoming.length === 1 && (last === undefined || incoming[0]!.at > last.at)) {
    const next = [...existing, incoming[0]!];
    return next.length > cap ? next.slice(next.length - cap) : next;
  }
  const byTime = new Map<number, Reading>();
  for (const r of existing) byTime.set(r.at, r);
  let changed = false;
  for (const r of incoming) {
    const held = byTime.get(r.at);
    if (held === undefined || JSON.stringify(held.metrics) !== JSON.stringify(r.metrics)) changed = true;
    byTime.set(r.at, r);
  }
  if (!changed) return existing;
  const merged = [...byTime.values()].sort((a, b) => a.at - b.at);
  return merged.length > cap ? merged.slice(merged.length - cap) : merged;
}

/** Columns for a chart: x in seconds, one y column per numeric metric (null where absent). */
export interface Series {
  keys: string[];
  x: number[];
  ys: (number | null)[][];
}

/** The numeric metrics of `readings`, in name order, at most {@link MAX_CHARTED_METRICS}. */
export function numericSeries(readings: readonly Reading[]): Series {
  const keys = new Set<string>();
  for (const r of readings) {
    for (const [key, value] of Object.entries(r.metrics)) {
      if (typeof value === "number" && Number.isFinite(value)) keys.add(key);
    }
  }
  const sorted = [...keys].sort().slice(0, MAX_CHARTED_METRICS);
  return {
    keys: sorted,
    x: readings.map((r) => r.at / 1000),
    ys: sorted.map((key) =>
      readings.map((r) => {
        const v = r.metrics[key];
        return typeof v === "number" && Number.isFinite(v) ? v : null;
      }),
    ),
  };
}
