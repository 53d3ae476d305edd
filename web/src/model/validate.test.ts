import { describe, expect, it } from "vitest";

import { alert, alertsMessage, device, fleetMessage } from "./testing/fixtures.js";
import { checkAlertPage, checkAlerts, checkDeviceDetail, checkFleet, checkMe, checkReadingPage, checkTelemetry } from "./validate.js";

describe("checkAlerts", () => {
  it("accepts the contract's example with fields added within v1", () => {
    const message = { ...alertsMessage([{ ...alert(43), extra: true } as never, alert(42)]), future_field: 1 };
    const checked = checkAlerts(message);
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    expect(checked.value.alerts.map((a) => a.alert_id)).toEqual([43, 42]);
    expect(checked.value.alerts[0]).toHaveProperty("extra", true);
    expect(checked.value).toHaveProperty("future_field", 1);
  });

  it("names the first broken field of an alert", () => {
    expect(checkAlerts(alertsMessage([alert(1), { ...alert(2), alert_id: "x" } as never]))).toEqual({
      ok: false,
      error: "alerts[1].alert_id must be an integer",
    });
    expect(checkAlerts(alertsMessage([{ ...alert(1), summary: 42 } as never]))).toEqual({ ok: false, error: "alerts[0].summary must be a string" });
    expect(checkAlerts(alertsMessage([{ ...alert(1), status: "GONE" } as never]))).toEqual({
      ok: false,
      error: "alerts[0].status must be OPEN, ACKNOWLEDGED or CLOSED",
    });
    expect(checkAlerts(alertsMessage([{ ...alert(1), created_at: "yesterday" }]))).toEqual({
      ok: false,
      error: "alerts[0].created_at must be an RFC 3339 timestamp",
    });
    expect(checkAlerts(alertsMessage([{ ...alert(1), severity: 1.5 }]))).toEqual({ ok: false, error: "alerts[0].severity must be an integer" });
    expect(checkAlerts({ ...alertsMessage([]), alerts: null })).toEqual({ ok: false, error: "alerts must be an array" });
    expect(checkAlerts("alerts")).toEqual({ ok: false, error: "message must be an object" });
  });

  it("accepts per-severity counts and names a broken one", () => {
    const counted = { ...alertsMessage([alert(1, { severity: 4 })], 1, 3), open_by_severity: { "2": 2, "4": 1 } };
    const checked = checkAlerts(counted);
    expect(checked.ok && checked.value.open_by_severity).toEqual({ "2": 2, "4": 1 });
    for (const broken of [{ critical: 1 }, { "4": -1 }, { "4": 1.5 }, { "4": "1" }, [1]]) {
      const result = checkAlerts({ ...counted, open_by_severity: broken });
      expect(result.ok, JSON.stringify(broken)).toBe(false);
      expect(!result.ok && result.error, JSON.stringify(broken)).toMatch(/^open_by_severity/);
    }
  });

  it("keeps a hostile summary as the exact text it is", () => {
    const hostile = "<img src=x onerror=alert(1)>";
    const checked = checkAlerts(alertsMessage([alert(1, { summary: hostile })]));
    expect(checked.ok && checked.value.alerts[0]!.summary).toBe(hostile);
  });

  it("never lets total_open fall below the alerts listed", () => {
    const checked = checkAlerts(alertsMessage([alert(1), alert(2)], 1, 0));
    expect(checked.ok && checked.value.total_open).toBe(2);
  });
});

describe("checkFleet", () => {
  it("accepts a fleet whose counts add up", () => {
    const checked = checkFleet(fleetMessage([device("a"), device("b", { status: "STALE" }), device("c", { status: "OFFLINE", last_seen_at: null, battery_pct: null })]));
    expect(checked.ok && checked.value.counts).toEqual({ total: 3, online: 1, stale: 1, offline: 1 });
  });

  it("refuses counts that do not add up, unknown statuses and bad timestamps", () => {
    const m = fleetMessage([device("a")]);
    expect(checkFleet({ ...m, counts: { ...m.counts, total: 5 } })).toEqual({ ok: false, error: "counts.total must be online + stale + offline" });
    expect(checkFleet({ ...m, devices: [device("a", { status: "BROKEN" as never })] })).toEqual({
      ok: false,
      error: "devices[0].status must be OFFLINE, STALE or ONLINE",
    });
    expect(checkFleet({ ...m, devices: [device("a", { last_seen_at: "soon" })] })).toEqual({
      ok: false,
      error: "devices[0].last_seen_at must be an RFC 3339 timestamp",
    });
    expect(checkFleet({ ...m, devices: [device("a", { battery_pct: "full" as never })] })).toEqual({ ok: false, error: "devices[0].battery_pct must be a number or null" });
  });
});

describe("readings", () => {
  const telemetry = { type: "telemetry", tenant_id: "acme", device_id: "dev-1", seq: 5, data: { timestamp: "2026-11-22T10:00:00.9Z", metrics: { temp_c: 21.5 } } };

  it("turns a telemetry message into a reading with its time in ms", () => {
    expect(checkTelemetry(telemetry, "dev-1")).toEqual({
      ok: true,
      value: { timestamp: "2026-11-22T10:00:00.9Z", at: Date.parse("2026-11-22T10:00:00.9Z"), metrics: { temp_c: 21.5 } },
    });
  });

  it("refuses telemetry of another device or without metrics", () => {
    expect(checkTelemetry(telemetry, "dev-2")).toEqual({ ok: false, error: 'device_id must be "dev-2"' });
    expect(checkTelemetry({ ...telemetry, data: { timestamp: "2026-11-22T10:00:00Z", metrics: [] } }, "dev-1")).toEqual({
      ok: false,
      error: "data.metrics must be an object",
    });
  });

  it("checks a REST page of readings and a device detail", () => {
    expect(checkReadingPage({ items: [{ timestamp: "2026-11-22T10:00:00Z", metrics: {} }] })).toMatchObject({ ok: true, value: [{ metrics: {} }] });
    expect(checkReadingPage({ items: [{ timestamp: 5, metrics: {} }] })).toEqual({ ok: false, error: "items[0].timestamp must be a string" });
    expect(checkDeviceDetail({ ...device("dev-1"), latest: null })).toMatchObject({ ok: true, value: { device_id: "dev-1", latest: null } });
    expect(checkDeviceDetail({ ...device("dev-1"), latest: { timestamp: "2026-11-22T10:00:00Z", metrics: { a: 1 } } })).toMatchObject({
      ok: true,
      value: { latest: { metrics: { a: 1 } } },
    });
  });

  it("checks who is logged in", () => {
    expect(checkMe({ email: "a@b", tenant_id: "acme", role: "customer_admin" })).toEqual({ ok: true, value: { email: "a@b", tenant_id: "acme", role: "customer_admin" } });
    expect(checkMe({ email: "a@b" })).toEqual({ ok: false, error: "tenant_id must be a string" });
  });
});

describe("checkAlertPage", () => {
  const item = { alert_id: 7, device_id: "dev-0001", site_id: "site-01", alert_type: "temp_high", severity: 4, summary: "hot", status: "OPEN", created_at: "2026-11-22T10:00:00Z" };

  it("takes the items of a page as alerts", () => {
    expect(checkAlertPage({ items: [item], next: null })).toEqual({ ok: true, value: [item] });
  });

  it("refuses a page whose alerts are not shaped as alerts", () => {
    expect(checkAlertPage({ items: [{ ...item, severity: "high" }] })).toEqual({ ok: false, error: "items[0].severity must be an integer" });
    expect(checkAlertPage({ items: [{ ...item, status: "GONE" }] })).toEqual({ ok: false, error: "items[0].status must be OPEN, ACKNOWLEDGED or CLOSED" });
    expect(checkAlertPage({ items: [{ ...item, created_at: "yesterday" }] })).toEqual({ ok: false, error: "items[0].created_at must be an RFC 3339 timestamp" });
    expect(checkAlertPage({ alerts: [] })).toEqual({ ok: false, error: "items must be an array" });
  });
});
