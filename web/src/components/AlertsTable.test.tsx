import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { emptyAlertsFeed, reduceAlerts } from "../model/alertsFeed.js";
import { alert, alertsMessage } from "../model/testing/fixtures.js";
import { AlertsBody, AlertsCount } from "./AlertsTable.js";
import { expectBannerAboveTable } from "./testing.js";

const malformed = { ...alertsMessage([]), alerts: [{ alert_id: "not-a-number" }] };

describe("AlertsBody", () => {
  it("keeps the last valid alerts on show after a malformed update, with the error as a banner above them", () => {
    const valid = reduceAlerts(emptyAlertsFeed, { type: "message", message: alertsMessage([alert(2), alert(1)]), now: 0 });
    const feed = reduceAlerts(valid, { type: "message", message: malformed, now: 1 });
    expect(feed.error).toMatch(/^alerts\[0\]\./);
    const html = renderToStaticMarkup(<AlertsBody feed={feed} />);
    expectBannerAboveTable(html, "alerts-table");
    expect(html).toContain(">alert 2<");
    expect(html).toContain(">alert 1<");
  });

  it("shows only the error while no valid update has come", () => {
    const html = renderToStaticMarkup(<AlertsBody feed={reduceAlerts(emptyAlertsFeed, { type: "message", message: malformed, now: 0 })} />);
    expect(html).toContain('data-testid="error-card"');
    expect(html).toContain("Waiting for the next valid update.");
    expect(html).not.toContain("alerts-table");
    expect(html).not.toContain("Waiting for the first alerts update");
  });
});

describe("AlertsCount", () => {
  it("says how many critical alerts the capped list leaves out", () => {
    const listed = [alert(9, { severity: 4 }), alert(8, { severity: 2 })];
    const html = renderToStaticMarkup(<AlertsCount message={{ ...alertsMessage(listed, 1, 120), open_by_severity: { "2": 100, "4": 20 } }} />);
    expect(html).toContain("newest 2 of 120 open");
    expect(html).toContain('data-testid="alerts-unlisted-critical"> · 19 critical not listed<');
  });

  it("says nothing more when every critical alert is listed, or the counts are missing", () => {
    const listed = [alert(9, { severity: 4 }), alert(8, { severity: 2 })];
    for (const message of [{ ...alertsMessage(listed, 1, 120), open_by_severity: { "2": 119, "4": 1 } }, alertsMessage(listed, 1, 120)]) {
      const html = renderToStaticMarkup(<AlertsCount message={message} />);
      expect(html).toContain("newest 2 of 120 open");
      expect(html).not.toContain("critical");
    }
  });
});

