import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { openCriticalAlertsQuery } from "../app/queries.js";
import type { Alert, AlertsMessage } from "../client/index.js";
import { criticalOpen, emptyAlertsFeed, reduceAlerts } from "../model/alertsFeed.js";
import { alert, alertsMessage } from "../model/testing/fixtures.js";
import { AlertsBody, AlertsCount, UnlistedCritical } from "./AlertsTable.js";
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
    expect(html).toContain(' · <button type="button" class="link-button widget__meta-critical" data-testid="alerts-unlisted-critical" aria-expanded="false"');
    expect(html).toContain(">19 critical not listed</button>");
  });

  it("says when the left-out critical alerts are shown, and which element shows them", () => {
    const message = { ...alertsMessage([alert(9, { severity: 2 })], 1, 120), open_by_severity: { "2": 119, "5": 1 } };
    const html = renderToStaticMarkup(<AlertsCount message={message} unlistedShown />);
    expect(html).toContain('aria-expanded="true" aria-controls="alerts-unlisted"');
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


describe("UnlistedCritical", () => {
  /** `message` with the open critical alerts a read of them returned. */
  function render(message: AlertsMessage, read: Alert[]): string {
    const queries = new QueryClient();
    queries.setQueryData(openCriticalAlertsQuery(criticalOpen(message)).queryKey, read);
    return renderToStaticMarkup(
      <QueryClientProvider client={queries}>
        <UnlistedCritical message={message} />
      </QueryClientProvider>,
    );
  }

  it("shows the open critical alerts the list leaves out, not the ones it holds", () => {
    const listed = [alert(9, { severity: 4, summary: "listed critical" }), alert(8)];
    const message = { ...alertsMessage(listed, 1, 120), open_by_severity: { "2": 117, "4": 2, "5": 1 } };
    const html = render(message, [alert(9, { severity: 4, summary: "listed critical" }), alert(5, { severity: 5, summary: "older critical" }), alert(3, { severity: 4, summary: "oldest critical" })]);
    expect(html).toContain('id="alerts-unlisted"');
    expect(html).toContain(">Critical alerts not listed<");
    expect(html).toContain(">older critical<");
    expect(html).toContain(">oldest critical<");
    expect(html).not.toContain("listed critical");
    expect(html.indexOf("older critical")).toBeLessThan(html.indexOf("oldest critical"));
  });

  it("says when it shows fewer than the push counts", () => {
    const message = { ...alertsMessage([alert(9)], 1, 300), open_by_severity: { "2": 100, "4": 200 } };
    const html = render(message, [alert(5, { severity: 4, summary: "newest critical" })]);
    expect(html).toContain(">Newest 1 of 200 critical alerts not listed<");
  });

  it("says so when the read finds every critical alert listed after all", () => {
    const message = { ...alertsMessage([alert(9, { severity: 4 })], 1, 5), open_by_severity: { "2": 3, "4": 2 } };
    const html = render(message, [alert(9, { severity: 4 })]);
    expect(html).toContain("Every open critical alert is listed below.");
    expect(html).not.toContain("<table");
  });
});
