import { describe, expect, it } from "vitest";

import { SeqTracker } from "./seq.js";

describe("SeqTracker snapshots", () => {
  it("accepts increasing seqs and drops older and duplicate ones", () => {
    const t = new SeqTracker();
    expect(t.acceptSnapshot("alerts", 10)).toBe(true);
    expect(t.acceptSnapshot("alerts", 10)).toBe(false);
    expect(t.acceptSnapshot("alerts", 9)).toBe(false);
    expect(t.acceptSnapshot("alerts", 11)).toBe(true);
    expect(t.acceptSnapshot("alerts", 10)).toBe(false);
    expect(t.highest("alerts")).toBe(11);
  });

  it("keeps topics independent", () => {
    const t = new SeqTracker();
    expect(t.acceptSnapshot("alerts", 100)).toBe(true);
    expect(t.acceptSnapshot("fleet", 5)).toBe(true);
    expect(t.acceptSnapshot("telemetry:dev-1", 1)).toBe(true);
    expect(t.acceptSnapshot("telemetry:dev-2", 1)).toBe(true);
    expect(t.acceptSnapshot("fleet", 6)).toBe(true);
    expect(t.acceptSnapshot("alerts", 99)).toBe(false);
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
  it("drops duplicates but keeps a late event with a lower seq", () => {
    const t = new SeqTracker();
    expect(t.acceptEvent("events:tickets", 5)).toBe(true);
    expect(t.acceptEvent("events:tickets", 7)).toBe(true);
    expect(t.acceptEvent("events:tickets", 6)).toBe(true);
    expect(t.acceptEvent("events:tickets", 7)).toBe(false);
    expect(t.acceptEvent("events:tickets", 5)).toBe(false);
    expect(t.highest("events:tickets")).toBe(7);
  });

  it("keeps topics independent", () => {
    const t = new SeqTracker();
    expect(t.acceptEvent("events:a", 1)).toBe(true);
    expect(t.acceptEvent("events:b", 1)).toBe(true);
    expect(t.acceptEvent("events:a", 1)).toBe(false);
  });

  it("remembers a bounded window of recent seqs", () => {
    const t = new SeqTracker({ eventWindow: 3 });
    for (const seq of [1, 2, 3, 4]) expect(t.acceptEvent("events:a", seq)).toBe(true);
    // 1 fell out of the window; 2, 3 and 4 are still known.
    expect(t.acceptEvent("events:a", 4)).toBe(false);
    expect(t.acceptEvent("events:a", 2)).toBe(false);
    expect(t.acceptEvent("events:a", 1)).toBe(true);
  });
});
