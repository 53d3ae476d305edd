import { describe, expect, it } from "vitest";

import { Heartbeat } from "./heartbeat.js";
import type { Timers } from "./timers.js";

/** A hand-driven clock and timer queue, to show the heartbeat needs nothing global. */
class ManualTime implements Timers {
  now = 0;
  private nextId = 1;
  private readonly queue = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.queue.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.queue.delete(handle as number);
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.queue) if (entry[1].at <= end && (!first || entry[1].at < first[1].at)) first = entry;
      if (!first) break;
      this.queue.delete(first[0]);
      this.now = first[1].at;
      first[1].fn();
    }
    this.now = end;
  }

  get pending(): number {
    return this.queue.size;
  }
}

function setup() {
  const time = new ManualTime();
  const events: string[] = [];
  const hb = new Heartbeat({
    timers: time,
    now: () => time.now,
    sendPing: () => events.push(`ping@${time.now}`),
    onTimeout: () => events.push(`timeout@${time.now}`),
  });
  return { time, events, hb };
}

describe("Heartbeat", () => {
  it("pings every 20 s while messages keep arriving", () => {
    const { time, events, hb } = setup();
    hb.start();
    for (let i = 0; i < 10; i += 1) {
      time.advance(10_000);
      hb.seen();
    }
    expect(events).toEqual(["ping@20000", "ping@40000", "ping@60000", "ping@80000", "ping@100000"]);
    expect(hb.active).toBe(true);
  });

  it("times out 45 s after the last message", () => {
    const { time, events, hb } = setup();
    hb.start();
    time.advance(30_000);
    hb.seen();
    time.advance(44_999);
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual([]);
    time.advance(1);
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual(["timeout@75000"]);
    expect(hb.active).toBe(false);
    time.advance(120_000);
    expect(events.filter((e) => e.startsWith("timeout"))).toHaveLength(1);
    expect(time.pending).toBe(0);
  });

  it("times out 45 s after start when nothing ever arrives", () => {
    const { time, events, hb } = setup();
    hb.start();
    time.advance(45_000);
    expect(events).toEqual(["ping@20000", "ping@40000", "timeout@45000"]);
  });

  it("does nothing once stopped", () => {
    const { time, events, hb } = setup();
    hb.start();
    hb.stop();
    time.advance(200_000);
    expect(events).toEqual([]);
    expect(time.pending).toBe(0);
  });
});

describe("Heartbeat in a background tab", () => {
  /** Timers that fire late, as a hidden tab's do (about once a minute). */
  function throttled(time: ManualTime, stepMs: number): Timers {
    return {
      setTimeout: (fn: () => void, ms: number) => time.setTimeout(fn, Math.ceil(ms / stepMs) * stepMs),
      clearTimeout: (h: unknown) => time.clearTimeout(h),
    };
  }

  it("does not take a quiet socket that answers every ping for a dead one", () => {
    const time = new ManualTime();
    const events: string[] = [];
    const hb: Heartbeat = new Heartbeat({
      timers: throttled(time, 60_000),
      now: () => time.now,
      // The gateway answers 50 ms after each ping (the socket's messages are not throttled).
      sendPing: () => {
        events.push(`ping@${time.now}`);
        time.setTimeout(() => hb.seen(), 50);
      },
      onTimeout: () => events.push(`timeout@${time.now}`),
    });
    hb.start();
    time.advance(600_000);
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual([]);
    expect(events.filter((e) => e.startsWith("ping")).length).toBeGreaterThanOrEqual(9);
    expect(hb.active).toBe(true);
  });

  it("still finds a dead socket: a ping unanswered for the wait", () => {
    const time = new ManualTime();
    const events: string[] = [];
    const hb = new Heartbeat({
      timers: throttled(time, 60_000),
      now: () => time.now,
      sendPing: () => events.push(`ping@${time.now}`),
      onTimeout: () => events.push(`timeout@${time.now}`),
    });
    hb.start();
    time.advance(180_000);
    expect(events[0]).toBe("ping@60000");
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual(["timeout@120000"]);
  });

  it("pings at once when asked and goes on from there", () => {
    const { time, events, hb } = setup();
    hb.start();
    time.advance(5_000);
    hb.seen();
    hb.pingNow();
    expect(events).toEqual(["ping@5000"]);
    time.advance(20_000);
    expect(events).toEqual(["ping@5000", "ping@25000"]);
    // Unanswered since 5 s, silent since 5 s: dead 45 s after the last message.
    time.advance(25_000);
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual(["timeout@50000"]);
  });

  it("finds a dead socket though the tab is shown again and again", () => {
    const { time, events, hb } = setup();
    hb.start();
    // Nothing ever arrives; the user comes back to the tab every 10 s.
    for (let at = 10_000; at <= 120_000; at += 10_000) {
      time.advance(10_000);
      hb.pingNow();
    }
    // Silent since 0, unanswered since 10 s: dead at 45 s, as without the visits.
    expect(events.filter((e) => e.startsWith("timeout"))).toEqual(["timeout@45000"]);
    expect(hb.active).toBe(false);
  });
});
