/**
 * Short ticket lifetimes in a real headless Chromium, on a stack of its own whose pulse-web
 * issues tickets that live 5 s (the shortest it allows): the page must renew its token on the
 * open socket before each one ends, and, when it cannot, take the gateway's 4001 at expiry and
 * come back by itself once tickets can be had again.
 */

import { describe, expect, it } from "vitest";

import { closeCodes, logInWithForm, openLoggedIn, waitLive } from "./browser.js";
import { insertAlert, insertDevice, siteOf } from "./data.js";
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

  it("follows the browser's session to another tenant's user and back, with nothing of the other's shown", async () => {
    const { db, tenant, email, password, webUrl } = suite.stack;
    // Another tenant, one device and a viewer whose password is the seeded one.
    const other = `${tenant}-b`;
    const otherEmail = `viewer@${other}.example`;
    await db.query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)", [other, other]);
    await insertDevice(db, other, "dev-b1", "site-b");
    await db.query(
      "INSERT INTO users (email, password_hash, tenant_id, role) SELECT $1, password_hash, $2, 'customer_viewer' FROM users WHERE email = $3",
      [otherEmail, other, email],
    );
    const { context, page } = await openLoggedIn(suite.browser, suite.stack);
    const second = await context.newPage();
    try {
      const shownTenant = () => page.locator(".topbar__tenant").textContent();
      expect(await shownTenant()).toBe(tenant);
      await alertArrives(page, `Before the switch ${Date.now()}`);

      // The browser logs in as the other user by a request that runs none of the page's code
      // (so no tab announces it): the page's next ticket names that user, and it follows.
      const login = await context.request.post(`${webUrl}/api/v2/login`, { data: { email: otherEmail, password } });
      expect(login.status()).toBe(200);
      await expect.poll(shownTenant, { timeout: 3 * TICKET_SECONDS * 1_000, interval: 100 }).toBe(other);
      await waitLive(page);
      const theirs = `Other tenant's ${Date.now()}`;
      await insertAlert(db, other, { deviceId: "dev-b1", siteId: "site-b", summary: theirs });
      const summaries = page.getByTestId("alert-summary");
      await summaries.getByText(theirs, { exact: true }).waitFor({ timeout: 3_000 });
      expect(await summaries.allTextContents()).toEqual([theirs]);

      // Back, through a second tab's logout and login form: the first tab is told at once.
      await second.goto(webUrl);
      await second.getByTestId("logout").click();
      await expect.poll(() => page.getByTestId("login-page").count(), { timeout: 2_000, interval: 50 }).toBe(1);
      await logInWithForm(second, email, password);
      await expect.poll(shownTenant, { timeout: 2_000, interval: 50 }).toBe(tenant);
      await waitLive(page);
      await alertArrives(page, `After the switch back ${Date.now()}`);
      expect(await summaries.allTextContents()).not.toContain(theirs);
    } finally {
      await context.close();
    }
  }, 60_000);
});
