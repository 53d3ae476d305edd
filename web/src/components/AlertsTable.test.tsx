import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { emptyAlertsFeed, reduceAlerts } from "../model/alertsFeed.js";
import { alert, alertsMessage } from "../model/testing/fixtures.js";
import { AlertsBody } from "./AlertsTable.js";
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
