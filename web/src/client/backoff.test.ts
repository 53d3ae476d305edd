import { describe, expect, it } from "vitest";

import { Backoff, backoffCeiling, backoffDelay } from "./backoff.js";

describe("backoffCeiling", () => {
  it("doubles from the base until the cap", () => {
    const ceilings = Array.from({ length: 8 }, (_, attempt) => backoffCeiling(attempt));
    expect(ceilings).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("stays at the cap for huge attempts", () => {
    expect(backoffCeiling(1_000)).toBe(30_000);
    expect(backoffCeiling(Number.MAX_SAFE_INTEGER)).toBe(30_000);
  });

  it("uses the given base and cap", () => {
    expect(backoffCeiling(0, 250, 1_000)).toBe(250);
    expect(backoffCeiling(2, 250, 1_000)).toBe(1_000);
    expect(backoffCeiling(3, 250, 1_000)).toBe(1_000);
  });

  it("refuses a base or cap that is not positive", () => {
    expect(() => backoffCeiling(0, 0, 1_000)).toThrow(RangeError);
    expect(() => backoffCeiling(0, 1_000, -1)).toThrow(RangeError);
    expect(() => backoffCeiling(0, Number.NaN, 1_000)).toThrow(RangeError);
  });
});

describe("backoffDelay (full jitter)", () => {
  it("spans the whole window from 0 to the ceiling", () => {
    expect(backoffDelay(3, { random: () => 0 })).toBe(0);
    expect(backoffDelay(3, { random: () => 0.5 })).toBe(4_000);
    expect(backoffDelay(3, { random: () => 0.999_999 })).toBe(7_999);
  });

  it("never exceeds the ceiling, whatever the random source returns", () => {
    expect(backoffDelay(0, { random: () => 1 })).toBe(1_000);
    expect(backoffDelay(0, { random: () => 7 })).toBe(1_000);
    expect(backoffDelay(0, { random: () => -3 })).toBe(0);
    expect(backoffDelay(0, { random: () => Number.NaN })).toBe(0);
  });

  it("stays within [0, ceiling) for many draws of the real random source", () => {
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const ceiling = backoffCeiling(attempt);
      for (let i = 0; i < 200; i += 1) {
        const d = backoffDelay(attempt);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
    }
  });
});

describe("Backoff", () => {
  it("widens the window with each failure and caps it", () => {
    const backoff = new Backoff({ random: () => 0.999_999 });
    const delays = Array.from({ length: 8 }, () => backoff.next());
    expect(delays).toEqual([999, 1_999, 3_999, 7_999, 15_999, 29_999, 29_999, 29_999]);
    expect(backoff.attempt).toBe(8);
  });

  it("never gives up", () => {
    const backoff = new Backoff({ random: () => 0.5 });
    let last = 0;
    for (let i = 0; i < 1_000; i += 1) last = backoff.next();
    expect(last).toBe(15_000);
    expect(backoff.attempt).toBe(1_000);
  });

  it("starts over after reset", () => {
    const backoff = new Backoff({ random: () => 0.999_999 });
    backoff.next();
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(999);
  });

  it("draws every delay from the injected random source", () => {
    const draws = [0.1, 0.9, 0.0];
    const backoff = new Backoff({ random: () => draws.shift() ?? 0 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([100, 1_800, 0]);
  });

  it("validates its options up front", () => {
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
  });
});
