import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { reduceDeviceReadings, type DeviceReadings, type DeviceReadingsView } from "../app/useDeviceReadings.js";
import { fresherStatus, LatestReading, MAX_METRICS_SHOWN, RecentReadings, TelemetryBody } from "./DevicePage.js";

const empty: DeviceReadings = { detail: null, readings: [], historyLoaded: false, notFound: false, historyError: null, liveError: null, liveCount: 0 };
const detail = { device_id: "dev-1", site_id: "s", status: "ONLINE" as const, last_seen_at: null, battery_pct: null, latest: null };
const reading = (iso: string, temp: number) => ({ timestamp: iso, at: Date.parse(iso), metrics: { temp_c: temp } });

const view = (state: DeviceReadings, reloading = false): DeviceReadingsView => ({ ...state, retry: () => {}, reloading, askedAt: 0 });
const render = (state: DeviceReadings, reloading = false) => renderToStaticMarkup(<TelemetryBody data={view(state, reloading)} />);

describe("TelemetryBody", () => {
  const loaded = reduceDeviceReadings(empty, { type: "history", detail, readings: [reading("2026-11-22T10:00:00Z", 20)] });
  const reloadFailed = reduceDeviceReadings(loaded, { type: "history-failed", error: "HTTP 502", notFound: false });

  it("shows the error in place of the charts while nothing is loaded, with a retry", () => {
    const html = render(reduceDeviceReadings(empty, { type: "history-failed", error: "HTTP 502", notFound: false }));
    expect(html).toContain("Could not load the history");
    expect(html).toContain('data-testid="error-card"');
    expect(html).toContain(">Retry</button>");
    expect(html).not.toContain('class="charts"');
  });

  it("keeps the charts after a failed reload and says they may be out of date", () => {
    expect(reloadFailed.readings).toBe(loaded.readings);
    const html = render(reloadFailed);
    expect(html).toContain('class="charts"');
    expect(html).not.toContain('data-testid="error-card"');
    expect(html).toContain('data-testid="stale-notice"');
    expect(html).toContain("Could not reload the history: HTTP 502.");
    expect(html).toContain(">Retry</button>");
    // No second retry while a load already runs.
    expect(render(reloadFailed, true)).not.toContain(">Retry</button>");
  });

  it("keeps live readings on show when the first load fails", () => {
    const live = reduceDeviceReadings(empty, {
      type: "live",
      deviceId: "dev-1",
      message: { type: "telemetry", tenant_id: "acme", device_id: "dev-1", seq: 1, data: { timestamp: "2026-11-22T10:00:10Z", metrics: { temp_c: 25 } } },
    });
    const html = render(reduceDeviceReadings(live, { type: "history-failed", error: "HTTP 502", notFound: false }));
    expect(html).toContain('class="charts"');
    expect(html).toContain('data-testid="stale-notice"');
  });

  it("drops the notice once a later load succeeds", () => {
    const recovered = reduceDeviceReadings(reloadFailed, { type: "history", detail, readings: [reading("2026-11-22T10:00:00Z", 20)] });
    expect(recovered.historyError).toBeNull();
    const html = render(recovered);
    expect(html).toContain('class="charts"');
    expect(html).not.toContain("stale-notice");
  });
});

describe("a reading with more metrics than can be shown", () => {
  // A device sends what it likes: 5,000 keys, and a value of 100,000 characters.
  const metrics: Record<string, unknown> = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`m${String(i).padStart(4, "0")}`, i]));
  metrics.m0000 = "x".repeat(100_000);
  const huge = { timestamp: "2026-11-22T10:00:00Z", at: Date.parse("2026-11-22T10:00:00Z"), metrics };

  it("shows at most MAX_METRICS_SHOWN tiles, says how many more, and cuts a long value", () => {
    const html = renderToStaticMarkup(<LatestReading reading={huge} />);
    expect(html.match(/data-metric=/g)).toHaveLength(MAX_METRICS_SHOWN);
    expect(html).toContain(`and ${5_000 - MAX_METRICS_SHOWN} more metrics not shown`);
    expect(html.length).toBeLessThan(20_000);
  });

  it("gives the readings table at most MAX_METRICS_SHOWN columns", () => {
    const html = renderToStaticMarkup(<RecentReadings readings={[huge]} />);
    expect(html.match(/<th>/g)).toHaveLength(MAX_METRICS_SHOWN + 1);
    expect(html.length).toBeLessThan(20_000);
  });
});

describe("fresherStatus", () => {
  const stale = { ...detail, status: "STALE" as const };
  it("takes the status read again only where it was asked for after the history shown", () => {
    // The status asked for when a reading arrived, at 2000, answered first; a history reload
    // asked for before the reading, at 1000, answered after it: the status is the newer.
    expect(fresherStatus({ detail, askedAt: 2000 }, 1000)).toBe(detail);
    // A history reloaded after the status read (a reconnect) is the newer: none taken.
    expect(fresherStatus({ detail: stale, askedAt: 1000 }, 2000)).toBeUndefined();
    expect(fresherStatus(undefined, 0)).toBeUndefined();
  });
});
