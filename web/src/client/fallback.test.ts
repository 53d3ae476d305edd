import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { FallbackPoller, type PollContext } from "./fallback.js";
import { globalTimers } from "./timers.js";
import type { DataMessage, FleetMessage } from "./types.js";

const fleet: FleetMessage = {
  type: "fleet",
  tenant_id: "acme",
  seq: 0,
  ts: "2026-11-22T10:00:00Z",
  counts: { total: 0, online: 0, stale: 0, offline: 0 },
  devices: [],
};

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

function setup(poll: (ctx: PollContext) => Promise<void> | void = () => {}, timeoutMs?: number) {
  const published: DataMessage[] = [];
  const changes: boolean[] = [];
  const errors: string[] = [];
  const pollFn = vi.fn(poll);
  const poller = new FallbackPoller({
    poll: pollFn,
    publish: (m) => published.push(m),
    timers: globalTimers,
    onChange: (p) => changes.push(p),
    onError: (e) => errors.push(e.kind),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  return { poller, pollFn, published, changes, errors };
}

describe("FallbackPoller", () => {
  it("starts polling only after the threshold, then every 30 s", async () => {
    const { poller, pollFn, changes } = setup();
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(4_999);
    expect(pollFn).not.toHaveBeenCalled();
    expect(poller.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(pollFn).toHaveBeenCalledTimes(1);
    expect(poller.polling).toBe(true);
    await vi.advanceTimersByTimeAsync(29_999);
    expect(pollFn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(pollFn).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(pollFn).toHaveBeenCalledTimes(4);
    expect(changes).toEqual([true]);
  });

  it("never polls when the socket comes back within the threshold", async () => {
    const { poller, pollFn, changes } = setup();
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(4_000);
    poller.connected();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(pollFn).not.toHaveBeenCalled();
    expect(changes).toEqual([]);
  });

  it("does not restart the countdown on repeated disconnects", async () => {
    const { poller, pollFn } = setup();
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(3_000);
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(pollFn).toHaveBeenCalledTimes(1);
  });

  it("stops when connected, aborts the poll in flight and ignores its late publishes", async () => {
    let context: PollContext | undefined;
    let finish = (): void => {};
    const { poller, pollFn, published, changes } = setup(
      (ctx) =>
        new Promise<void>((resolve) => {
          context = ctx;
          finish = resolve;
        }),
    );
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pollFn).toHaveBeenCalledTimes(1);
    context?.publish(fleet);
    expect(published).toHaveLength(1);

    poller.connected();
    expect(context?.signal.aborted).toBe(true);
    context?.publish({ ...fleet, seq: 1 });
    finish();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(published).toHaveLength(1);
    expect(pollFn).toHaveBeenCalledTimes(1);
    expect(changes).toEqual([true, false]);
  });

  it("reports a failed poll and keeps polling", async () => {
    let n = 0;
    const { poller, pollFn, errors, published } = setup(async (ctx) => {
      n += 1;
      if (n === 1) throw new Error("HTTP 502");
      ctx.publish(fleet);
    });
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(errors).toEqual(["poll_failed"]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(pollFn).toHaveBeenCalledTimes(2);
    expect(published).toEqual([fleet]);
  });

  it("never runs two polls at once", async () => {
    let running = 0;
    let most = 0;
    const { poller, pollFn } = setup(async () => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 50_000));
      running -= 1;
    }, 60_000);
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(5_000 + 3 * 80_000);
    expect(pollFn).toHaveBeenCalledTimes(4);
    expect(most).toBe(1);
  });

  it("reads the event positions afresh for every poll", async () => {
    let after = 3;
    const seen: unknown[] = [];
    const poller = new FallbackPoller({
      poll: (ctx) => {
        seen.push(ctx.events);
      },
      publish: () => {},
      events: () => [{ topic: "tickets", after: after++ }],
      timers: globalTimers,
    });
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(35_000);
    expect(seen).toEqual([[{ topic: "tickets", after: 3 }], [{ topic: "tickets", after: 4 }]]);
    poller.stop();
  });

  it("tells of each poll that succeeded, with when it started, not of one that failed or was stopped", async () => {
    let outcome: "ok" | "fail" | "stop" = "ok";
    const succeeded = vi.fn();
    const poller: FallbackPoller = new FallbackPoller({
      poll: async () => {
        await new Promise((r) => setTimeout(r, 1_000));
        if (outcome === "fail") throw new Error("HTTP 502");
        if (outcome === "stop") poller.stop();
      },
      publish: () => {},
      timers: globalTimers,
      onSuccess: succeeded,
      now: () => Date.now(),
    });
    const disconnectedAt = Date.now();
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(6_000);
    // Its start, not its end: what it published is at least that new.
    expect(succeeded.mock.calls).toEqual([[disconnectedAt + 5_000]]);
    outcome = "fail";
    await vi.advanceTimersByTimeAsync(30_000);
    expect(succeeded).toHaveBeenCalledTimes(1);
    outcome = "stop";
    await vi.advanceTimersByTimeAsync(30_000);
    expect(succeeded).toHaveBeenCalledTimes(1);
  });

  it("hands no event positions when none are given", async () => {
    const { poller, pollFn } = setup();
    poller.disconnected();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pollFn.mock.calls[0]?.[0].events).toEqual([]);
  });
});

describe("FallbackPoller deadline", () => {
  it("aborts a hung poll, reports it and polls again", async () => {
    const signals: AbortSignal[] = [];
    const t = setup((ctx) => {
      signals.push(ctx.signal);
      return new Promise<void>(() => {}); // never answers
    });
    t.poller.disconnected();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(t.pollFn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(15_000);
    expect(signals[0]?.aborted).toBe(true);
    expect(t.errors).toEqual(["poll_failed"]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(t.pollFn).toHaveBeenCalledTimes(2);
    t.poller.stop();
  });
});
