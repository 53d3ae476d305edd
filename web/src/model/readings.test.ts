import { describe, expect, it } from "vitest";

import { MAX_CHARTED_METRICS, mergeReadings, numericSeries } from "./readings.js";
import type { Reading } from "./validate.js";

const r = (at: number, metrics: Record<string, unknown> = { v: at }): Reading => ({ timestamp: new Date(at).toISOString(), at, metrics });

describe("mergeReadings", () => {
  it("appends a newer live reading", () => {
    const merged = mergeReadings([r(1), r(2)], [r(3)]);
    expect(merged.map((x) => x.at)).toEqual([1, 2, 3]);
  });

  it("sorts, replaces a reading of the same time, and keeps the newest within the cap", () => {
    const merged = mergeReadings([r(1), r(3)], [r(2), r(3, { v: 30 }), r(0)], 3);
    expect(merged.map((x) => x.at)).toEqual([1, 2, 3]);
    expect(merged[2]!.metrics).toEqual({ v: 30 });
  });

  it("returns the same array when nothing changed, so nothing re-renders", () => {
    const held = [r(1), r(2)];
    expect(mergeReadings(held, [])).toBe(held);
    expect(mergeReadings(held, [r(2)])).toBe(held);
    expect(mergeReadings(held, [r(1), r(2)])).toBe(held);
  });

  it("merges a history that arrives after live readings", () => {
    const live = mergeReadings([], [r(10)]);
    expect(mergeReadings(live, [r(5), r(6), r(10)]).map((x) => x.at)).toEqual([5, 6, 10]);
  });

  it("caps a stream of live readings", () => {
    let held: readonly Reading[] = [];
    for (let i = 0; i < 10; i++) held = mergeReadings(held, [r(i)], 4);
    expect(held.map((x) => x.at)).toEqual([6, 7, 8, 9]);
  });
});

describe("numericSeries", () => {
  it("makes one column per numeric metric, in name order, with gaps as null", () => {
    const series = numericSeries([r(1000, { temp_c: 20, mode: "eco" }), r(2000, { temp_c: 21, humidity_pct: 40 }), r(3000, { temp_c: null })]);
    expect(series.keys).toEqual(["humidity_pct", "temp_c"]);
    expect(series.x).toEqual([1, 2, 3]);
    expect(series.ys).toEqual([
      [null, 40, null],
      [20, 21, null],
    ]);
  });

  it("charts at most a handful of metrics", () => {
    const metrics = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`m${i}`, i]));
    expect(numericSeries([r(1, metrics)]).keys).toHaveLength(MAX_CHARTED_METRICS);
  });

  it("is empty without readings", () => {
    expect(numericSeries([])).toEqual({ keys: [], x: [], ys: [] });
  });
});
