/**
 * A tenant with more open alerts than its snapshot lists, in a real headless Chromium, on a stack
 * of its own whose poller lists the newest 3. A critical alert behind newer minor ones is left
 * out of the list, but never out of the count: the Open alerts card counts it as critical and the
 * alerts widget says that it is not listed, and both follow when it closes.
 */

import { describe, expect, it } from "vitest";

import { openLoggedIn, stat } from "./browser.js";
import { closeAlert, insertAlert, siteOf } from "./data.js";
import { stackAndBrowser } from "./suite.js";

const LISTED = 3;
const suite = stackAndBrowser({ name: "alerts-capped", devices: 2, sites: 1, pollerEnv: { PULSE_ALERTS_CAP: String(LISTED) } });

describe("open alerts beyond the listed ones", () => {
  it("counts a critical alert the list leaves out, and stops when it closes", async () => {
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

      await closeAlert(stack.db, critical);
      await expect.poll(() => count.textContent(), { timeout: 5_000 }).toBe(`newest ${LISTED} of 4 open`);
      expect(await criticalNote.textContent()).toBe("none critical");
      expect(watch.pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
