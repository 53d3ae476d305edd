import { describe, expect, it } from "vitest";

import { Pacer } from "./pacer.js";

function pacer(burst = 3, perSecond = 10) {
  let now = 0;
  const p = new Pacer({ now: () => now, burst, perSecond });
  return { p, advance: (ms: number) => (now += ms) };
}

describe("Pacer", () => {
  it("gives the burst at once, then one slot per 1/rate second, in order", () => {
    const { p } = pacer();
    expect([p.reserve(), p.reserve(), p.reserve(), p.reserve(), p.reserve()]).toEqual([0, 0, 0, 100, 200]);
  });

  it("refills over time, up to the burst", () => {
    const { p, advance } = pacer();
    for (let i = 0; i < 3; i += 1) p.reserve();
    advance(100);
    expect(p.reserve()).toBe(0);
    expect(p.reserve()).toBe(100);
    advance(10_000);
    expect([p.reserve(), p.reserve(), p.reserve(), p.reserve()]).toEqual([0, 0, 0, 100]);
  });

  it("after restartAfter, starts again after the wait at the steady rate, voiding earlier slots", () => {
    const { p } = pacer();
    for (let i = 0; i < 10; i += 1) p.reserve();
    p.restartAfter(1_000);
    expect([p.reserve(), p.reserve(), p.reserve()]).toEqual([1_000, 1_100, 1_200]);
  });

  it("reset gives the full burst again", () => {
    const { p } = pacer();
    for (let i = 0; i < 10; i += 1) p.reserve();
    p.reset();
    expect([p.reserve(), p.reserve(), p.reserve(), p.reserve()]).toEqual([0, 0, 0, 100]);
  });
});
