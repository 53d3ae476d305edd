/**
 * Capped snapshots, in a real headless Chromium, on a stack of its own whose poller lists the
 * newest 3 open alerts and the least healthy device only. A tenant with more open alerts than
 * its snapshot lists: A critical alert behind newer minor ones is left
 * out of the list, but never out of the count: the Open alerts card counts it as critical, the
 * alerts widget says that it is not listed and lists it when asked, and all follow as critical
 * alerts are pushed out of the list and close.
 */

import { describe, expect, it } from "vitest";

import { axeViolations, openLoggedIn, stat } from "./browser.js";
import { closeAlert, insertAlert, insertDevice, insertReadings, siteOf } from "./data.js";
import { artifact } from "./stack.js";
import { stackAndBrowser } from "./suite.js";

const LISTED = 3;
const suite = stackAndBrowser({
  name: "alerts-capped",
  devices: 2,
  sites: 1,
  pollerEnv: { PULSE_ALERTS_CAP: String(LISTED), PULSE_FLEET_DEVICES_CAP: "1" },
});

describe("open alerts beyond the listed ones", () => {
  it("counts and lists the critical alerts the list leaves out, and follows them until they close", async () => {
    const { stack, browser } = suite;
    const deviceId = "dev-0001";
    const siteId = await siteOf(stack.db, stack.tenant, deviceId);
    const critical = await insertAlert(stack.db, stack.tenant, { deviceId, siteId, summary: "Oldest, and critical", severity: 4 });
    for (let n = 1; n <= 4; n++) await insertAlert(stack.db, stack.tenant, { deviceId, siteId, summary: `Minor ${n}`, severity: 1 });

    const { context, page, watch } = await openLoggedIn(browser, stack);
    try {
      const count = page.getByTestId("alerts-count");
      const criticalNote = page.getByTestId("stat-alerts").locator(".stat__sub");
      await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe(`newest ${LISTED} of 5 open · 1 critical not listed`);
      expect(await stat(page, "alerts")).toBe(5);
      expect(await criticalNote.textContent()).toBe("1 critical");
      const table = page.getByTestId("alerts-table");
      expect(await table.locator("tbody tr.alert-row").count()).toBe(LISTED);
      expect(await table.getByText("Oldest, and critical").count()).toBe(0);

      // Asked for, the left-out critical alert is listed above the others.
      await page.getByTestId("alerts-unlisted-critical").click();
      const unlisted = page.getByTestId("alerts-unlisted-table");
      await expect.poll(() => unlisted.locator("[data-testid=alert-summary]").allTextContents(), { timeout: 5_000 }).toEqual(["Oldest, and critical"]);

      // A newer critical alert, listed at first, then pushed out of the list by newer minor
      // ones: the count changes and the left-out ones are read again.
      const newer = await insertAlert(stack.db, stack.tenant, { deviceId, siteId, summary: "Newer, and critical", severity: 5 });
      for (let n = 5; n <= 7; n++) await insertAlert(stack.db, stack.tenant, { deviceId, siteId, summary: `Minor ${n}`, severity: 1 });
      await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe(`newest ${LISTED} of 9 open · 2 critical not listed`);
      await expect
        .poll(() => unlisted.locator("[data-testid=alert-summary]").allTextContents(), { timeout: 5_000 })
        .toEqual(["Newer, and critical", "Oldest, and critical"]);
      expect(await criticalNote.textContent()).toBe("2 critical");

      await closeAlert(stack.db, critical);
      await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe(`newest ${LISTED} of 8 open · 1 critical not listed`);
      await expect.poll(() => unlisted.locator("[data-testid=alert-summary]").allTextContents(), { timeout: 5_000 }).toEqual(["Newer, and critical"]);
      expect(await criticalNote.textContent()).toBe("1 critical");
      await page.screenshot({ path: artifact("alerts-unlisted-critical.png") });
      // While its rows are new (highlighted) too.
      expect(await axeViolations(page, "[data-testid=alerts-widget]")).toEqual([]);

      // Hidden and shown again on a click.
      const toggle = page.getByTestId("alerts-unlisted-critical");
      await toggle.click();
      expect(await page.getByTestId("alerts-unlisted").count()).toBe(0);
      expect(await toggle.getAttribute("aria-expanded")).toBe("false");
      await toggle.click();
      await expect.poll(() => unlisted.locator("[data-testid=alert-summary]").allTextContents(), { timeout: 5_000 }).toEqual(["Newer, and critical"]);

      // Once none is left out, nothing is said and the list above is gone.
      await closeAlert(stack.db, newer);
      await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe(`newest ${LISTED} of 7 open`);
      expect(await page.getByTestId("alerts-unlisted").count()).toBe(0);
      expect(await criticalNote.textContent()).toBe("none critical");
      expect(watch.pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("keeps the status of a device the capped fleet leaves out current while its readings arrive", async () => {
    const { db, tenant } = suite.stack;
    // A device that never reported (offline: the least healthy, so the one the fleet lists),
    // and one last heard 5 minutes ago (stale, and left out).
    await insertDevice(db, tenant, "never", "site-x");
    await insertDevice(db, tenant, "quiet", "site-x");
    await insertReadings(db, tenant, "quiet", [{ secondsAgo: 300, metrics: { temp_c: 20 } }]);
    const { context, page } = await openLoggedIn(suite.browser, suite.stack);
    try {
      await page.goto(`${suite.stack.webUrl}/devices/quiet`);
      const badge = page.getByTestId("device-page").locator(".page__head .badge");
      await expect.poll(() => badge.getAttribute("class"), { timeout: 5_000 }).toContain("badge--stale");
      // It reports again: ONLINE, though no fleet push names it.
      await insertReadings(db, tenant, "quiet", [{ secondsAgo: 0, metrics: { temp_c: 21 } }]);
      await expect.poll(() => badge.getAttribute("class"), { timeout: 5_000 }).toContain("badge--online");
    } finally {
      await context.close();
    }
  }, 30_000);
});
