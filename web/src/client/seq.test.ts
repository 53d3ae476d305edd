import { describe, expect, it } from "vitest";

import { SeqTracker } from "./seq.js";

/** Offers `snapshots` (topic, seq) to `t` in order; whether it took each. */
function offer(t: SeqTracker, snapshots: [string, number][]): boolean[] {
  return snapshots.map(([topic, seq]) => t.acceptSnapshot(topic, seq));
}

describe("SeqTracker snapshots", () => {
  it("accepts increasing seqs and drops older and duplicate ones", () => {
    const t = new SeqTracker();
    const alerts = (seq: number): [string, number] => ["alerts", seq];
    expect(offer(t, [10, 10, 9, 11, 10].map(alerts))).toEqual([true, false, false, true, false]);
    expect(t.highest("alerts")).toBe(11);
  });

  it("after a poll, takes the snapshot with the seq seen before, even behind an older one", () => {
    const t = new SeqTracker();
    expect(t.acceptSnapshot("fleet", 500)).toBe(true);
    t.polledSnapshot("fleet");
    // A late push from before is dropped; the gateway's current one still replaces the poll.
    expect(offer(t, [["fleet", 499], ["fleet", 500], ["fleet", 500]])).toEqual([false, true, false]);
  });

  it("keeps topics independent", () => {
    const t = new SeqTracker();
    const taken = offer(t, [
      ["alerts", 100],
      ["fleet", 5],
      ["telemetry:dev-1", 1],
      ["telemetry:dev-2", 1],
      ["fleet", 6],
      ["alerts", 99],
    ]);
    expect(taken).toEqual([true, true, true, true, true, false]);
    expect(t.highest("alerts")).toBe(100);
    expect(t.highest("fleet")).toBe(6);
    expect(t.highest("telemetry:dev-3")).toBeUndefined();
  });

  it("accepts seq 0 as a first value but not twice", () => {
    const t = new SeqTracker();
    expect(t.acceptSnapshot("fleet", 0)).toBe(true);
    expect(t.acceptSnapshot("fleet", 0)).toBe(false);
  });

  it("forgets a topic on request", () => {
    const t = new SeqTracker();
    t.acceptSnapshot("alerts", 10);
    t.acceptSnapshot("fleet", 10);
    t.forget("alerts");
    expect(t.acceptSnapshot("alerts", 10)).toBe(true);
    expect(t.acceptSnapshot("fleet", 10)).toBe(false);
    t.clear();
    expect(t.acceptSnapshot("fleet", 10)).toBe(true);
  });
});

describe("SeqTracker events", () => {
  it("takes the first event as the position, delivers the next ones and drops duplicates", () => {
    const t = new SeqTracker();
    expect(t.position("events:tickets")).toBeUndefined();
    expect(t.acceptEvent("events:tickets", 5)).toBe("next");
    expect(t.acceptEvent("events:tickets", 6)).toBe("next");
    expect(t.acceptEvent("events:tickets", 6)).toBe("duplicate");
    expect(t.acceptEvent("events:tickets", 2)).toBe("duplicate");
    expect(t.acceptEvent("events:tickets", 7)).toBe("next");
    expect(t.position("events:tickets")).toBe(7);
    expect(t.resumeAfter("events:tickets")).toBe(7);
  });

  it("calls a skipped seq a gap, delivers it and goes on from there", () => {
    const t = new SeqTracker();
    t.acceptEvent("events:a", 1);
    expect(t.acceptEvent("events:a", 4)).toBe("gap");
    expect(t.position("events:a")).toBe(4);
    expect(t.acceptEvent("events:a", 3)).toBe("duplicate");
    expect(t.acceptEvent("events:a", 5)).toBe("next");
  });

  it("keeps topics independent", () => {
    const t = new SeqTracker();
    expect(t.acceptEvent("events:a", 1)).toBe("next");
    expect(t.acceptEvent("events:b", 1)).toBe("next");
    expect(t.acceptEvent("events:a", 1)).toBe("duplicate");
    expect(t.acceptEvent("events:b", 3)).toBe("gap");
    expect(t.position("events:a")).toBe(1);
    // Snapshots and events never share a number.
    t.acceptSnapshot("alerts", 100);
    expect(t.position("alerts")).toBeUndefined();
  });

  it("takes the seq of a fresh subscription as the baseline", () => {
    const t = new SeqTracker();
    expect(t.acceptBaseline("events:a", 41, undefined)).toBe("baseline");
    expect(t.position("events:a")).toBe(41);
    expect(t.acceptEvent("events:a", 41)).toBe("duplicate");
    expect(t.acceptEvent("events:a", 42)).toBe("next");
    // A baseline behind the position (events of an earlier subscription) changes nothing.
    expect(t.acceptBaseline("events:a", 40, undefined)).toBe("ignored");
    expect(t.position("events:a")).toBe(42);
    // Seq 0: a topic without events yet.
    expect(t.acceptBaseline("events:b", 0, undefined)).toBe("baseline");
    expect(t.acceptEvent("events:b", 1)).toBe("next");
  });

  it("calls a fresh baseline ahead of events still in flight from an earlier subscription a gap", () => {
    // Released and held again at once: events 10 and 11 of the old subscription arrive after
    // the new subscribe went out, and event 12 went out while neither held the topic.
    const t = new SeqTracker();
    expect(t.acceptEvent("events:a", 10)).toBe("next");
    expect(t.acceptEvent("events:a", 11)).toBe("next");
    expect(t.acceptBaseline("events:a", 12, undefined)).toBe("gap");
    expect(t.position("events:a")).toBe(12);
    expect(t.acceptEvent("events:a", 13)).toBe("next");
  });

  it("calls a seq ahead of the since of a resumed subscription a gap", () => {
    const t = new SeqTracker();
    t.acceptEvent("events:a", 10);
    expect(t.acceptBaseline("events:a", 10, 10)).toBe("ignored");
    expect(t.acceptBaseline("events:a", 15, 10)).toBe("gap");
    expect(t.position("events:a")).toBe(15);
    expect(t.acceptEvent("events:a", 16)).toBe("next");
  });

  it("after a reset, takes the next event as the position whatever its seq", () => {
    const t = new SeqTracker();
    t.acceptEvent("events:a", 10);
    t.resetEvents("events:a", 57);
    // Until an event arrives, a resubscription resumes just before the announced one.
    expect(t.resumeAfter("events:a")).toBe(56);
    expect(t.position("events:a")).toBe(10);
    expect(t.acceptEvent("events:a", 60)).toBe("next");
    expect(t.resumeAfter("events:a")).toBe(60);
    expect(t.acceptEvent("events:a", 61)).toBe("next");

    // Even a lower seq, when the gateway says so.
    t.resetEvents("events:a", null);
    expect(t.resumeAfter("events:a")).toBe(61);
    expect(t.acceptEvent("events:a", 3)).toBe("next");
    expect(t.position("events:a")).toBe(3);
  });

  it("forgets a topic's position", () => {
    const t = new SeqTracker();
    t.acceptEvent("events:a", 10);
    t.forget("events:a");
    expect(t.position("events:a")).toBeUndefined();
    expect(t.resumeAfter("events:a")).toBeUndefined();
    expect(t.acceptEvent("events:a", 3)).toBe("next");
    t.clear();
    expect(t.position("events:a")).toBeUndefined();
  });
});
