import { describe, expect, it } from "vitest";

import { ACTIVITY_ROWS, emptyActivityFeed, MAX_FEED_RETRY_AFTER_MS, reduceActivity, retryDelayMs, type ActivityAction, type ActivityFeed } from "./activityFeed.js";
import { activityEvent, activityPage } from "./testing/fixtures.js";
import { checkEventsPage } from "./validate.js";

function page(seqs: number[], lastSeq?: number) {
  const checked = checkEventsPage(activityPage(seqs, lastSeq), "activity");
  if (!checked.ok) throw new Error(checked.error);
  return checked.value;
}

const seqs = (feed: ActivityFeed) => feed.entries.map((e) => e.seq);
const run = (state: ActivityFeed, ...actions: ActivityAction[]) => actions.reduce(reduceActivity, state);
const live = (seq: number): ActivityAction => ({ type: "event", message: activityEvent(seq) });
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("reduceActivity", () => {
  it("starts wanting a load, and shows what it returned, newest first", () => {
    expect(emptyActivityFeed.loading).toBe(true);
    const feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([3, 4, 5]) });
    expect(seqs(feed)).toEqual([5, 4, 3]);
    expect(feed.known).toBe(5);
    expect(feed.loading).toBe(false);
  });

  it("holds live events during the load and applies them against it: none twice, none missing", () => {
    const feed = run(
      emptyActivityFeed,
      live(5), // already in the page
      live(6), // newer than the page
      { type: "loaded", request: 1, page: page([3, 4, 5]) },
      live(6), // a duplicate after the load
      live(7),
    );
    expect(seqs(feed)).toEqual([7, 6, 5, 4, 3]);
    expect(feed.known).toBe(7);
    expect(feed.loading).toBe(false);
    expect(feed.pending).toEqual([]);
  });

  it("asks for a new load on a hole in the seqs, and fills it from the load", () => {
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1, 2]) }, live(5));
    expect(seqs(feed)).toEqual([5, 2, 1]); // shown at once
    expect(feed.loading).toBe(true);
    expect(feed.loadRequest).toBe(2);
    feed = run(feed, live(6), { type: "loaded", request: 2, page: page([1, 2, 3, 4, 5]) });
    expect(seqs(feed)).toEqual([6, 5, 4, 3, 2, 1]);
    expect(feed.loading).toBe(false);
  });

  it("asks for a new load on a reset, and takes the events that follow against it", () => {
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1, 2]) }, { type: "reset" });
    expect(feed.loading).toBe(true);
    feed = run(feed, live(9), live(10), { type: "loaded", request: 2, page: page([7, 8, 9]) });
    expect(seqs(feed)).toEqual([10, 9, 8, 7, 2, 1]);
    expect(feed.known).toBe(10);
  });

  it("ignores the end of a load that a newer request replaced", () => {
    let feed = run(emptyActivityFeed, { type: "reset" });
    expect(feed.loadRequest).toBe(2);
    feed = run(feed, { type: "loaded", request: 1, page: page([1]) });
    expect(feed.loading).toBe(true);
    expect(feed.entries).toEqual([]);
    feed = run(feed, { type: "load-failed", request: 1, error: "old" });
    expect(feed.loadError).toBeNull();
  });

  it("counts failed loads in a row for the retries' backoff, and starts over after one loads", () => {
    let feed = run(emptyActivityFeed, { type: "load-failed", request: 1, error: "HTTP 502" });
    expect(feed.failures).toBe(1);
    feed = run(feed, { type: "retry" }, { type: "load-failed", request: 2, error: "HTTP 502" });
    expect(feed.failures).toBe(2);
    expect([1, 2, 3, 6, 7, 20].map(retryDelayMs)).toEqual([2_000, 4_000, 8_000, 60_000, 60_000, 60_000]);
    feed = run(feed, { type: "retry" }, { type: "loaded", request: 3, page: page([1]) });
    expect(feed).toMatchObject({ failures: 0, loadError: null });
  });

  it("retries a failed load no sooner than the server's Retry-After asked, within a bound", () => {
    const feed = run(emptyActivityFeed, { type: "load-failed", request: 1, error: "busy", retryAfterMs: 20_000 });
    expect(feed.retryAfterMs).toBe(20_000);
    expect(retryDelayMs(feed.failures, feed.retryAfterMs)).toBe(20_000);
    // The backoff still counts when it is the longer; an absurd wait is cut to the bound.
    expect(retryDelayMs(6, 20_000)).toBe(60_000);
    expect(retryDelayMs(1, 86_400_000)).toBe(MAX_FEED_RETRY_AFTER_MS);
    // The next failure without a Retry-After backs off as usual.
    const again = run(feed, { type: "retry" }, { type: "load-failed", request: 2, error: "HTTP 502" });
    expect(again.retryAfterMs).toBeNull();
    expect(retryDelayMs(again.failures, again.retryAfterMs)).toBe(4_000);
  });

  it("keeps live events through a failed load and applies them after a retry", () => {
    let feed = run(emptyActivityFeed, { type: "load-failed", request: 1, error: "HTTP 502" });
    expect(feed).toMatchObject({ loading: false, loadError: "HTTP 502", known: null });
    feed = run(feed, live(4));
    expect(feed.pending).toHaveLength(1);
    feed = run(feed, { type: "retry" });
    expect(feed).toMatchObject({ loading: true, loadError: null, loadRequest: 2 });
    feed = run(feed, { type: "loaded", request: 2, page: page([2, 3]) });
    expect(seqs(feed)).toEqual([4, 3, 2]);
  });

  it("after a failed reload, records a later hole but leaves the next load to the backoff, as it does a reset", () => {
    // A reset asks for a reload, which fails (a 503): the retry timer is armed, 2 s.
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1, 2]) }, { type: "reset" }, { type: "load-failed", request: 2, error: "HTTP 503" });
    expect(feed).toMatchObject({ loading: false, loadRequest: 2, loadError: "HTTP 503", failures: 1 });
    // An alert storm: every event past known + 1 would be a new load, and a new request
    // cancels the timer. They are shown, their holes recorded (known moves on), but none loads.
    feed = run(feed, live(5), live(6), live(9), { type: "reset" }, { type: "subscribed", position: 12 });
    expect(feed).toMatchObject({ loading: false, loadRequest: 2, loadError: "HTTP 503", failures: 1, known: 9 });
    expect(seqs(feed)).toEqual([9, 6, 5, 2, 1]);
    // The backoff's timer (or the user) loads, and the load fills the holes.
    feed = run(feed, { type: "retry" });
    expect(feed).toMatchObject({ loading: true, loadRequest: 3 });
    feed = run(feed, live(10), { type: "loaded", request: 3, page: page(range(1, 9)) });
    expect(seqs(feed)).toEqual(range(1, 10).reverse());
    expect(feed).toMatchObject({ loading: false, loadError: null, failures: 0, known: 10 });
    // With no load error standing, a hole asks for a load at once, as before.
    expect(run(feed, live(12))).toMatchObject({ loading: true, loadRequest: 4 });
  });

  it("loads once more when the client is ahead of the load, but only once", () => {
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1, 2]) });
    expect(run(feed, { type: "client-position", request: 1, position: 2 })).toBe(feed);
    feed = run(feed, { type: "client-position", request: 1, position: 4 });
    expect(feed).toMatchObject({ loading: true, loadRequest: 2, catchingUp: true });
    feed = run(feed, { type: "loaded", request: 2, page: page([1, 2, 3]) });
    expect(run(feed, { type: "client-position", request: 2, position: 4 })).toBe(feed);
  });

  it("loads once more when the gateway's subscribed names a baseline past a load that ended before it", () => {
    let feed = run(emptyActivityFeed, { type: "subscribed", position: 9 });
    expect(feed).toBe(emptyActivityFeed); // the load still runs: it compares when it ends
    feed = run(feed, { type: "loaded", request: 1, page: page([1, 2]) });
    expect(run(feed, { type: "subscribed", position: 2 })).toBe(feed);
    feed = run(feed, { type: "subscribed", position: 4 });
    expect(feed).toMatchObject({ loading: true, loadRequest: 2, catchingUp: true });
    feed = run(feed, { type: "loaded", request: 2, page: page([1, 2, 3, 4]) });
    expect(feed.known).toBe(4);
    expect(feed.loading).toBe(false);
  });

  it("caps the rows, dropping the oldest", () => {
    const feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page(range(1, ACTIVITY_ROWS)) }, live(ACTIVITY_ROWS + 1));
    expect(feed.entries).toHaveLength(ACTIVITY_ROWS);
    expect(feed.entries[0]?.seq).toBe(ACTIVITY_ROWS + 1);
    expect(feed.entries.at(-1)?.seq).toBe(2);
  });

  it("replaces everything when the topic started over", () => {
    const feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([40, 41]) }, { type: "reset" }, { type: "loaded", request: 2, page: page([1, 2]) });
    expect(seqs(feed)).toEqual([2, 1]);
    expect(feed.known).toBe(2);
  });

  it("reports a malformed live event, keeps its place in the sequence, and recovers", () => {
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1]) });
    feed = run(feed, { type: "event", message: activityEvent(2, {}, { summary: 42 }) });
    expect(feed.eventError).toBe("event.payload.summary must be a string");
    expect(feed.known).toBe(2);
    expect(feed.loading).toBe(false);
    feed = run(feed, live(3));
    expect(feed.eventError).toBeNull();
    expect(seqs(feed)).toEqual([3, 1]);
  });

  it("shows a live event the client refused for its envelope, until the next valid one", () => {
    let feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1]) });
    feed = run(feed, { type: "malformed", error: "malformed message: event: event is missing" });
    expect(feed.eventError).toMatch(/event is missing/);
    expect(seqs(feed)).toEqual([1]);
    // Its seq never reached the feed: the next event shows the hole, and a load fills it.
    feed = run(feed, live(3));
    expect(feed.eventError).toBeNull();
    expect(feed.loadRequest).toBeGreaterThan(1);
  });

  it("never changes the state it is given", () => {
    const loaded = run(emptyActivityFeed, { type: "loaded", request: 1, page: page([1, 2]) });
    const before = structuredClone(loaded);
    run(loaded, live(3), live(7), { type: "reset" });
    expect(loaded).toEqual(before);
  });
});

describe("checkEventsPage", () => {
  it("reads every event with its payload; missing payload fields are null", () => {
    const body = activityPage([7]);
    body.events.push(activityEvent(8, { event: "alert:closed", payload: null }));
    const checked = checkEventsPage(body, "activity");
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    expect(checked.value.lastSeq).toBe(7);
    expect(checked.value.events[0]).toMatchObject({ seq: 7, event: "alert:opened", alertId: 1007, deviceId: "dev-0001", summary: "alert 1007", severity: 2, status: "OPEN" });
    expect(checked.value.events[1]).toMatchObject({ seq: 8, event: "alert:closed", deviceId: null, summary: null });
  });

  it("refuses a page of another topic or a bad last_seq, and leaves out a broken event, naming it", () => {
    expect(checkEventsPage({ ...activityPage([1]), topic: "tickets" }, "activity")).toEqual({ ok: false, error: 'topic must be "activity"' });
    expect(checkEventsPage({ ...activityPage([1]), last_seq: -1 }, "activity")).toEqual({ ok: false, error: "last_seq must be an integer ≥ 0" });
    expect(checkEventsPage({ topic: "activity", events: {}, last_seq: 0 }, "activity")).toEqual({ ok: false, error: "events must be an array" });
    // One broken event (written by SQL) costs the feed that event, not the whole page.
    const broken = activityPage([1, 2, 3]);
    broken.events[0] = activityEvent(1, { ts: "yesterday" });
    broken.events[1] = activityEvent(2, { payload: { severity: "high" } });
    const checked = checkEventsPage(broken, "activity");
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    expect(checked.value.events.map((e) => e.seq)).toEqual([3]);
    expect(checked.value.malformed).toBe("events[0].ts must be an RFC 3339 timestamp");
    const feed = run(emptyActivityFeed, { type: "loaded", request: 1, page: checked.value });
    expect(feed).toMatchObject({ known: 3, eventError: "events[0].ts must be an RFC 3339 timestamp", loadError: null });
  });
});
