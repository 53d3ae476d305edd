import { describe, expect, it } from "vitest";

import { criticalArrivals, criticalOpen, emptyAlertsFeed, HIGHLIGHT_MS, nextExpiry, reduceAlerts, type AlertsFeed } from "./alertsFeed.js";
import { alert, alertsMessage } from "./testing/fixtures.js";

const receive = (state: AlertsFeed, message: unknown, now: number) => reduceAlerts(state, { type: "message", message, now });

describe("reduceAlerts", () => {
  it("highlights nothing in the first snapshot", () => {
    const feed = receive(emptyAlertsFeed, alertsMessage([alert(2), alert(1)]), 1_000);
    expect(feed.message?.alerts).toHaveLength(2);
    expect(feed.fresh.size).toBe(0);
    expect(feed.arrived).toEqual([]);
  });

  it("keeps the objects of alerts that did not change", () => {
    const first = receive(emptyAlertsFeed, alertsMessage([alert(2), alert(1)], 1), 1_000);
    const second = receive(first, alertsMessage([alert(3), alert(2, { summary: "changed" }), alert(1)], 2), 2_000);
    expect(second.message?.alerts[2]).toBe(first.message?.alerts[1]);
    expect(second.message?.alerts[1]).not.toBe(first.message?.alerts[0]);
    expect(second.message?.alerts[1]?.summary).toBe("changed");
    const third = receive(second, alertsMessage([alert(3), alert(2, { summary: "changed" }), alert(1)], 3), 3_000);
    expect(third.message?.alerts).toBe(second.message?.alerts);
  });

  it("highlights alerts that were not in the previous snapshot, until their time is up", () => {
    let feed = receive(emptyAlertsFeed, alertsMessage([alert(1)], 1), 1_000);
    feed = receive(feed, alertsMessage([alert(3), alert(2), alert(1)], 2), 2_000);
    expect([...feed.fresh.entries()]).toEqual([
      [3, 2_000 + HIGHLIGHT_MS],
      [2, 2_000 + HIGHLIGHT_MS],
    ]);
    expect(feed.arrived.map((a) => a.alert_id)).toEqual([3, 2]);
    expect(nextExpiry(feed)).toBe(2_000 + HIGHLIGHT_MS);

    // A later snapshot with the same alerts keeps the highlights and their end.
    feed = receive(feed, alertsMessage([alert(3), alert(2), alert(1)], 3), 3_000);
    expect(feed.fresh.get(3)).toBe(2_000 + HIGHLIGHT_MS);
    expect(feed.arrived).toEqual([]);

    const before = feed;
    expect(reduceAlerts(feed, { type: "expire", now: 2_000 + HIGHLIGHT_MS - 1 })).toBe(before);
    feed = reduceAlerts(feed, { type: "expire", now: 2_000 + HIGHLIGHT_MS });
    expect(feed.fresh.size).toBe(0);
    expect(nextExpiry(feed)).toBeUndefined();
  });

  it("does not take an older alert that moves up into a capped list for a new one", () => {
    const at = (minute: number) => `2026-11-22T09:${String(minute).padStart(2, "0")}:00Z`;
    const a = (id: number, minute: number) => alert(id, { created_at: at(minute), severity: 5 });
    // Two listed of four open; alert 4 closes, and alert 2 (older than the last row) moves up.
    let feed = receive(emptyAlertsFeed, alertsMessage([a(4, 40), a(3, 30)], 1, 4), 1_000);
    feed = receive(feed, alertsMessage([a(3, 30), a(2, 20)], 2, 3), 2_000);
    expect(feed.arrived).toEqual([]);
    expect(feed.fresh.size).toBe(0);
    // A larger list (a live push after the REST fallback's) shows older ones: not new either.
    feed = receive(feed, alertsMessage([a(3, 30), a(2, 20), a(1, 10)], 3, 3), 3_000);
    expect(feed.arrived).toEqual([]);
    // One newer than the last row is new, capped or not; so is any unknown one in a list that
    // was complete (all open alerts listed), however old (a reopened alert).
    feed = receive(feed, alertsMessage([a(5, 50), a(3, 30)], 4, 4), 4_000);
    expect(feed.arrived.map((x) => x.alert_id)).toEqual([5]);
    feed = receive(emptyAlertsFeed, alertsMessage([a(3, 30)], 1, 1), 1_000);
    feed = receive(feed, alertsMessage([a(3, 30), a(1, 10)], 2, 2), 2_000);
    expect(criticalArrivals(feed).map((x) => x.alert_id)).toEqual([1]);
  });

  it("forgets the highlight of an alert that left the list", () => {
    let feed = receive(emptyAlertsFeed, alertsMessage([alert(1)]), 0);
    feed = receive(feed, alertsMessage([alert(2), alert(1)]), 10);
    expect(feed.fresh.has(2)).toBe(true);
    feed = receive(feed, alertsMessage([alert(1)]), 20);
    expect(feed.fresh.has(2)).toBe(false);
  });

  it("keeps the last valid snapshot and reports a malformed one, then recovers", () => {
    let feed = receive(emptyAlertsFeed, alertsMessage([alert(1)]), 0);
    const good = feed.message;
    feed = receive(feed, { ...alertsMessage([]), alerts: [{ alert_id: "x" }] }, 10);
    expect(feed.error).toBe("alerts[0].device_id is missing");
    expect(feed.message).toBe(good);
    feed = receive(feed, alertsMessage([alert(2), alert(1)]), 20);
    expect(feed.error).toBeNull();
    // Compared with the last valid snapshot, alert 2 is new.
    expect(feed.fresh.has(2)).toBe(true);
  });

  it("picks the critical alerts among those that just arrived", () => {
    let feed = receive(emptyAlertsFeed, alertsMessage([alert(1, { severity: 5 })]), 0);
    expect(criticalArrivals(feed)).toEqual([]);
    feed = receive(feed, alertsMessage([alert(3, { severity: 4 }), alert(2, { severity: 3 }), alert(1, { severity: 5 })]), 10);
    expect(criticalArrivals(feed).map((a) => a.alert_id)).toEqual([3]);
  });

  it("never changes the state it is given", () => {
    const first = receive(emptyAlertsFeed, alertsMessage([alert(1)]), 0);
    const frozen = structuredClone({ ids: first.message?.alerts.map((a) => a.alert_id), fresh: [...first.fresh] });
    receive(first, alertsMessage([alert(2), alert(1)]), 10);
    expect({ ids: first.message?.alerts.map((a) => a.alert_id), fresh: [...first.fresh] }).toEqual(frozen);
  });

  it("counts critical open alerts from the per-severity counts, listed or not", () => {
    const listed = [alert(9, { severity: 4 }), alert(8, { severity: 2 })];
    const capped = { ...alertsMessage(listed, 1, 7), open_by_severity: { "2": 3, "4": 2, "5": 2 } };
    expect(criticalOpen(capped)).toEqual({ count: 4, unlisted: 3 });
    expect(criticalOpen({ ...capped, open_by_severity: { "2": 6, "4": 1 } })).toEqual({ count: 1, unlisted: 0 });
  });

  it("counts the listed alerts when a message has no per-severity counts", () => {
    const listed = [alert(9, { severity: 4 }), alert(8, { severity: 5 }), alert(7, { severity: 3 })];
    expect(criticalOpen(alertsMessage(listed, 1, 50))).toEqual({ count: 2, unlisted: 0 });
    expect(criticalOpen({ ...alertsMessage(listed, 1, 50), open_by_severity: {} })).toEqual({ count: 2, unlisted: 0 });
  });

  it("never counts fewer critical alerts than it lists", () => {
    const listed = [alert(9, { severity: 4 }), alert(8, { severity: 4 })];
    expect(criticalOpen({ ...alertsMessage(listed), open_by_severity: { "4": 1 } })).toEqual({ count: 2, unlisted: 0 });
  });
});
