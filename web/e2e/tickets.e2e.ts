/**
 * Short ticket lifetimes in a real headless Chromium, on a stack of its own whose pulse-web
 * issues tickets that live 5 s (the shortest it allows): the page must renew its token on the
 * open socket before each one ends, and, when it cannot, take the gateway's 4001 at expiry and
 * come back by itself once tickets can be had again.
 */

import { describe, expect, it } from "vitest";

import { closeCodes, openLoggedIn, waitLive } from "./browser.js";
import { insertAlert, siteOf } from "./data.js";
import { stackAndBrowser } from "./suite.js";

const TICKET_SECONDS = 5;
const TICKET_ROUTE = "**/api/v2/ws-ticket";

const suite = stackAndBrowser({ name: "tickets", devices: 10, sites: 2, webEnv: { PULSE_TICKET_TTL_SECONDS: String(TICKET_SECONDS) } });

/** Inserts an alert and waits until the page shows it. */
async function alertArrives(page: import("playwright-core").Page, summary: string): Promise<void> {
  const device = "dev-0001";
  await insertAlert(suite.stack.db, suite.stack.tenant, { deviceId: device, siteId: await siteOf(suite.stack.db, suite.stack.tenant, device), summary });
  await page.getByTestId("alert-summary").getByText(summary, { exact: true }).waitFor({ timeout: 3_000 });
}

describe(`tickets that live ${TICKET_SECONDS} s`, () => {
  it("renews the token on the open socket before each ticket ends: one socket, no 4001", async () => {
    const { context, page, watch } = await openLoggedIn(suite.browser, suite.stack);
    try {
      // Four lifetimes of a ticket.
      await expect.poll(() => watch.sent("auth"), { timeout: 4 * TICKET_SECONDS * 1_000 + 5_000, interval: 250 }).toBeGreaterThanOrEqual(4);
      expect(watch.received("authenticated")).toBeGreaterThanOrEqual(4);
      expect(watch.sockets.size).toBe(1);
      expect(await closeCodes(page)).toEqual([]);
      expect(await page.getByTestId("connection").getAttribute("data-state")).toBe("live");
      await alertArrives(page, `After renewals ${Date.now()}`);
    } finally {
      await context.close();
    }
  }, 60_000);

  it("takes the 4001 when no fresh ticket can be had, and comes back by itself when one can", async () => {
    const { context, page, watch } = await openLoggedIn(suite.browser, suite.stack);
    try {
      // The ticket endpoint fails from now on: renewal cannot happen, the token runs out.
      await context.route(TICKET_ROUTE, (route) => route.fulfill({ status: 503, body: "unavailable" }));
      await expect.poll(() => closeCodes(page), { timeout: TICKET_SECONDS * 1_000 + 5_000, interval: 100 }).toContain(4001);
      await expect.poll(() => page.getByTestId("connection").getAttribute("data-state"), { timeout: 5_000 }).not.toBe("live");
      // Tickets again: Live on a new socket, without a reload, and pushes flow.
      const loads = watch.documentLoads;
      await context.unroute(TICKET_ROUTE);
      await waitLive(page, 30_000);
      expect(watch.sockets.size).toBeGreaterThanOrEqual(2);
      expect(watch.documentLoads).toBe(loads);
      await alertArrives(page, `After the 4001 ${Date.now()}`);
    } finally {
      await context.close();
    }
  }, 60_000);
});
