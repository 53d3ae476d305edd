/**
 * The connection in a real headless Chromium under conditions a dashboard meets in the wild, on a
 * stack of its own: a quiet tenant (its devices never reported, so nothing is pushed unless a
 * test writes), and gateways that let a client fall only 2 events behind before closing it with
 * 4008, so a burst of events stages a slow consumer.
 */

import { describe, expect, it } from "vitest";

import { axeViolations, closeCodes, openLoggedIn, setHidden, stallMainThread } from "./browser.js";
import { activitySeqs, insertAlert, siteOf } from "./data.js";
import { artifact } from "./stack.js";
import { stackAndBrowser } from "./suite.js";

/** Longer than the client's heartbeat timeout (45 s) and shorter than a ticket's life (60 s). */
const STALL_MS = 48_000;

const suite = stackAndBrowser({ name: "connection", devices: 10, sites: 2, gatewayEnv: { PULSE_CLIENT_QUEUE_EVENTS: "2" } });

describe("the connection under real conditions", () => {
  it(
    "keeps a quiet hidden tab's socket through stalled timers, and pings at once when it is shown",
    async () => {
      const { context, page, watch } = await openLoggedIn(suite.browser, suite.stack, { visibility: true });
      try {
        expect(watch.sockets.size).toBe(1);
        await setHidden(page, true);
        // The background tab's timers run late: nothing arrives on the quiet socket meanwhile,
        // and no ping goes out, for longer than the heartbeat's timeout.
        await stallMainThread(context, page, STALL_MS);
        const pings = watch.sent("ping");
        const pongs = watch.received("pong");
        await setHidden(page, false);
        // Shown again: a ping at once, answered, on the same socket.
        await expect.poll(() => watch.sent("ping"), { timeout: 1_000, interval: 20 }).toBeGreaterThan(pings);
        await expect.poll(() => watch.received("pong"), { timeout: 2_000 }).toBeGreaterThan(pongs);
        expect(await page.getByTestId("connection").getAttribute("data-state")).toBe("live");
        expect(watch.sockets.size).toBe(1);
        expect(await closeCodes(page)).toEqual([]);
      } finally {
        await context.close();
      }
    },
    STALL_MS + 30_000,
  );

  it("resumes after a slow-consumer close (4008) with every event shown once, none lost", async () => {
    const { context, page, watch } = await openLoggedIn(suite.browser, suite.stack);
    try {
      const device = "dev-0001";
      const site = await siteOf(suite.stack.db, suite.stack.tenant, device);
      // One event handled first, so that a resume has a `since` to send.
      await insertAlert(suite.stack.db, suite.stack.tenant, { deviceId: device, siteId: site, summary: "Before the burst" });
      await page.getByTestId("activity-list").getByText("Before the burst").waitFor({ timeout: 5_000 });
      // A burst of 300 alerts in one statement: 300 activity events at once, far more than the
      // gateway lets this client fall behind.
      await suite.stack.db.query(
        `INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary)
         SELECT $1, $2, $3, 'burst', 1, 'Burst ' || n FROM generate_series(1, 300) n`,
        [suite.stack.tenant, device, site],
      );
      await expect.poll(() => closeCodes(page), { timeout: 10_000 }).toContain(4008);
      // Back to Live by itself, and the activity list shows the newest events exactly as stored:
      // the resume asked for what came after the last event handled.
      await page.locator('[data-testid="connection"][data-state="live"]').waitFor({ timeout: 15_000 });
      const stored = await activitySeqs(suite.stack.db, suite.stack.tenant, 50);
      expect(stored.length).toBe(50);
      const shown = () =>
        page
          .getByTestId("activity-list")
          .locator("li")
          .evaluateAll((items) => items.map((li) => Number((li as HTMLElement).dataset.seq)));
      await expect.poll(async () => (await shown()).slice(0, stored.length), { timeout: 10_000 }).toEqual(stored);
      const all = await shown();
      expect(new Set(all).size).toBe(all.length);
      const resumes = watch.framesSent.filter((f) => f.includes('"action":"subscribe"') && f.includes('"since"'));
      expect(resumes.length).toBeGreaterThan(0);
      await page.screenshot({ path: artifact("connection-after-4008.png") });
      expect(await axeViolations(page)).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
