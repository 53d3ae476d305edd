import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { fakeClient, nextSocketOf, settle } from "../client/testing/fakes.js";
import { reduceDeviceReadings, watchDeviceResubscribed, type DeviceReadings } from "./useDeviceReadings.js";

const empty: DeviceReadings = { detail: null, readings: [], historyLoaded: false, notFound: false, historyError: null, liveError: null, liveCount: 0 };
const reading = (iso: string, temp: number) => ({ timestamp: iso, at: Date.parse(iso), metrics: { temp_c: temp } });
const push = (iso: string, temp: number, deviceId = "dev-1") => ({
  type: "live" as const,
  deviceId: "dev-1",
  message: { type: "telemetry", tenant_id: "acme", device_id: deviceId, seq: 1, data: { timestamp: iso, metrics: { temp_c: temp } } },
});

describe("reduceDeviceReadings", () => {
  it("merges the REST history with live pushes, whichever comes first", () => {
    let s = reduceDeviceReadings(empty, push("2026-11-22T10:00:10Z", 25));
    expect(s.liveCount).toBe(1);
    s = reduceDeviceReadings(s, {
      type: "history",
      detail: { device_id: "dev-1", site_id: "s", status: "ONLINE", last_seen_at: null, battery_pct: null, latest: null },
      readings: [reading("2026-11-22T10:00:00Z", 20), reading("2026-11-22T10:00:05Z", 21)],
    });
    expect(s.historyLoaded).toBe(true);
    expect(s.readings.map((r) => r.metrics.temp_c)).toEqual([20, 21, 25]);
  });

  it("does not count a repeated push twice", () => {
    const once = reduceDeviceReadings(empty, push("2026-11-22T10:00:10Z", 25));
    expect(reduceDeviceReadings(once, push("2026-11-22T10:00:10Z", 25))).toBe(once);
  });

  it("reports a malformed push, keeps the readings, and clears the error with the next good one", () => {
    const good = reduceDeviceReadings(empty, push("2026-11-22T10:00:10Z", 25));
    const bad = reduceDeviceReadings(good, { type: "live", deviceId: "dev-1", message: { type: "telemetry", device_id: "dev-1", data: { timestamp: 5 } } });
    expect(bad.liveError).toBe("data.timestamp must be a string");
    expect(bad.readings).toBe(good.readings);
    expect(reduceDeviceReadings(bad, push("2026-11-22T10:00:11Z", 26)).liveError).toBeNull();
  });

  it("shows a push the client refused as the live error, keeping the readings", () => {
    const good = reduceDeviceReadings(empty, push("2026-11-22T10:00:10Z", 25));
    const bad = reduceDeviceReadings(good, { type: "live-malformed", error: "malformed message: telemetry: data is missing" });
    expect(bad.liveError).toMatch(/data is missing/);
    expect(bad.readings).toBe(good.readings);
    expect(reduceDeviceReadings(bad, push("2026-11-22T10:00:11Z", 26)).liveError).toBeNull();
  });

  it("refuses a push for another device", () => {
    expect(reduceDeviceReadings(empty, push("2026-11-22T10:00:10Z", 25, "dev-2")).liveError).toBe('device_id must be "dev-1"');
  });

  it("records a missing device, and forgets it once a later load finds it", () => {
    const missing = reduceDeviceReadings(empty, { type: "history-failed", error: "device not found", notFound: true });
    expect(missing).toMatchObject({ notFound: true, historyLoaded: true });
    const found = reduceDeviceReadings(missing, {
      type: "history",
      detail: { device_id: "dev-1", site_id: "s", status: "ONLINE", last_seen_at: null, battery_pct: null, latest: null },
      readings: [reading("2026-11-22T10:00:00Z", 20)],
    });
    expect(found).toMatchObject({ notFound: false, historyError: null });
  });
});

describe("watchDeviceResubscribed", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("asks for the history again each time the device is subscribed anew after a cut, not the first time", async () => {
    const { client, sockets, connect } = fakeClient();
    const again = vi.fn();
    const stop = watchDeviceResubscribed(client, "dev-1", again);
    await connect({ type: "device", device_id: "dev-1" }, { type: "device", device_id: "dev-2" });
    sockets.last().push({ type: "subscribed", channel: "device", device_id: "dev-1", seq: 3 });
    sockets.last().push({ type: "subscribed", channel: "device", device_id: "dev-2", seq: 3 });
    await settle();
    expect(again).not.toHaveBeenCalled();
    // The gateway goes away; readings pushed meanwhile never reach this client.
    sockets.last().serverClose(1006);
    (await nextSocketOf(sockets)).accept();
    sockets.last().push({ type: "subscribed", channel: "device", device_id: "dev-1", seq: 9 });
    await settle();
    expect(again).toHaveBeenCalledTimes(1);
    stop();
    client.close();
  });

  it("asks again at the first confirmation too when the history was read before it (the page opened during an outage)", async () => {
    const { client, sockets, connect } = fakeClient();
    const again = vi.fn();
    let read = false;
    const stop = watchDeviceResubscribed(client, "dev-1", again, () => read);
    await connect({ type: "device", device_id: "dev-1" });
    read = true; // the REST history came while the subscribe was still unanswered
    sockets.last().push({ type: "subscribed", channel: "device", device_id: "dev-1", seq: 3 });
    await settle();
    expect(again).toHaveBeenCalledTimes(1);
    stop();
    client.close();
  });
});
