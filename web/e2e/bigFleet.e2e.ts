/**
 * A big tenant in a real headless Chromium: 10,000 devices and 1,000 open alerts, every one
 * listed in its snapshot, and a fleet push a second. The dashboard must show all of them, reach
 * any of them by scrolling or filtering, and keep only the rows near the view in the DOM. How
 * fast it does so is measured by `npm run perf:fleet` (docs/BENCHMARKS.md), not asserted here.
 */

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { BIG_ALERTS, BIG_DEVICES, BIG_OFFLINE, BIG_STALE, churnFleet, deviceId, startBigFleetStack } from "./bigFleet.js";
import { axeViolations, launchChromium, openLoggedIn, stat } from "./browser.js";
import { artifact, type Stack } from "./stack.js";

/** Far fewer than the fleet: a few screens' worth. */
const MOST_ROWS_IN_DOM = 150;

let stack: Stack;
let browser: Browser;
let stopChurn: (() => Promise<void>) | undefined;
let dash: Awaited<ReturnType<typeof openLoggedIn>>;
let page: Page;

beforeAll(async () => {
  stack = await startBigFleetStack();
  stopChurn = churnFleet(stack);
  browser = await launchChromium();
  dash = await openLoggedIn(browser, stack);
  page = dash.page;
}, 300_000);

afterAll(async () => {
  await stopChurn?.();
  await browser?.close().catch(() => undefined);
  await stack?.stop();
});

const deviceRows = (p: Page) => p.getByTestId("devices-table").locator("tbody tr[data-device-id]");
const alertRows = (p: Page) => p.getByTestId("alerts-table").locator("tbody tr.alert-row");

/** Scrolls the scroll box `testId` to `to` ("end" or px) and waits for the rows there to render. */
async function scrollTo(p: Page, testId: string, to: number | "end"): Promise<void> {
  await p.getByTestId(testId).evaluate((el, where) => {
    el.scrollTop = where === "end" ? el.scrollHeight : where;
  }, to);
}

describe(`a tenant with ${BIG_DEVICES.toLocaleString("en-US")} devices and ${BIG_ALERTS.toLocaleString("en-US")} open alerts`, () => {
  it("shows every device in the counts and renders only the rows near the view", async () => {
    await expect.poll(() => stat(page, "total"), { timeout: 30_000 }).toBe(BIG_DEVICES);
    // The first fleet snapshot can predate the readings the stack wrote after seeding (every
    // device OFFLINE): the counts are waited for, not read once.
    await expect.poll(() => stat(page, "stale"), { timeout: 30_000 }).toBe(BIG_STALE);
    await expect.poll(() => stat(page, "online"), { timeout: 30_000 }).toBe(BIG_DEVICES - BIG_OFFLINE - BIG_STALE);
    await expect.poll(() => deviceRows(page).count()).toBeGreaterThan(10);
    expect(await deviceRows(page).count()).toBeLessThanOrEqual(MOST_ROWS_IN_DOM);
    // The table still says how many rows it has, for assistive technology.
    expect(await page.getByTestId("devices-table").getAttribute("aria-rowcount")).toBe(String(BIG_DEVICES + 1));
    expect(await page.getByTestId("devices-widget").textContent()).not.toContain("least healthy of"); // all listed
    await page.screenshot({ path: artifact("big-01-dashboard.png") });
  });

  it("has no accessibility violations (axe) with long tables rendered in part", async () => {
    await scrollTo(page, "devices-scroll", 40_000); // spacer rows above and below the rendered ones
    await expect.poll(() => deviceRows(page).count()).toBeGreaterThan(10);
    expect(await axeViolations(page)).toEqual([]);
    await scrollTo(page, "devices-scroll", 0);
  });

  it("reaches the last device by scrolling, still with few rows in the DOM", async () => {
    // Least healthy first, then by id: the last row is the highest-numbered ONLINE device.
    const last = deviceId(BIG_DEVICES - 1);
    await scrollTo(page, "devices-scroll", "end");
    await expect.poll(() => deviceRows(page).last().getAttribute("data-device-id"), { timeout: 5_000 }).toBe(last);
    expect(await deviceRows(page).last().getAttribute("aria-rowindex")).toBe(String(BIG_DEVICES + 1));
    expect(await deviceRows(page).count()).toBeLessThanOrEqual(MOST_ROWS_IN_DOM);
    // Back to the top: the first rows are the OFFLINE ones again.
    await scrollTo(page, "devices-scroll", 0);
    await expect.poll(() => deviceRows(page).first().getAttribute("data-device-id")).toBe(deviceId(20));
  });

  it("finds one device among all of them with the filter", async () => {
    const wanted = deviceId(7_777);
    await page.getByTestId("device-filter").fill(wanted);
    await expect.poll(() => deviceRows(page).count(), { timeout: 5_000 }).toBe(1);
    expect(await deviceRows(page).first().getAttribute("data-device-id")).toBe(wanted);
    await page.getByTestId("device-filter").fill("");
    await expect.poll(() => deviceRows(page).count()).toBeGreaterThan(10);
  });

  // Each push is a 1.3 MB snapshot built by debug binaries on a shared machine: the bound here is
  // looser than the 2 s the small tenant's tests hold to.
  it("shows a change to a device within 5 s, among the fleet pushes that keep coming", async () => {
    const pushesBefore = dash.watch.received("fleet");
    const target = deviceId(20); // the first row, in view
    const battery = page.locator(`tr[data-device-id="${target}"] .cell-num`);
    for (const [value, shown] of [[11.1, "11 %"], [42.4, "42 %"]] as const) {
      await stack.db.query(`UPDATE devices SET battery_pct = $3 WHERE tenant_id = $1 AND device_id = $2`, [stack.tenant, target, value]);
      await expect.poll(() => battery.textContent(), { timeout: 5_000, interval: 50 }).toBe(shown);
    }
    expect(dash.watch.received("fleet")).toBeGreaterThan(pushesBefore);
  });

  it("lists every open alert and reaches the oldest by scrolling, with few rows in the DOM", async () => {
    await expect.poll(() => page.getByTestId("alerts-count").textContent(), { timeout: 10_000 }).toBe(`${BIG_ALERTS} open`);
    expect(await alertRows(page).count()).toBeLessThanOrEqual(MOST_ROWS_IN_DOM);
    // The table says how many rows it has, for assistive technology, as the devices table does.
    const alertsTable = page.getByTestId("alerts-table");
    expect(await alertsTable.getAttribute("aria-rowcount")).toBe(String(BIG_ALERTS + 1));
    await scrollTo(page, "alerts-scroll", "end");
    const oldest = alertRows(page).last().getByTestId("alert-summary");
    await expect.poll(() => oldest.textContent(), { timeout: 5_000 }).toBe("Synthetic alert 1");
    expect(await alertRows(page).last().getAttribute("aria-rowindex")).toBe(String(BIG_ALERTS + 1));
    // Its details open and stay open while pushes keep coming; the details row counts too.
    await alertRows(page).last().getByRole("button", { name: "Show details" }).click();
    await page.locator("tr.alert-details").last().waitFor();
    expect(await alertsTable.getAttribute("aria-rowcount")).toBe(String(BIG_ALERTS + 2));
    expect(await page.locator("tr.alert-details").last().getAttribute("aria-rowindex")).toBe(String(BIG_ALERTS + 2));
    const pushes = dash.watch.received("fleet");
    await expect.poll(() => dash.watch.received("fleet"), { timeout: 5_000 }).toBeGreaterThan(pushes + 1);
    expect(await alertRows(page).last().getByRole("button", { name: "Hide details" }).count()).toBe(1);
  });

  it("ran without an uncaught error", () => {
    expect(dash.watch.pageErrors).toEqual([]);
    expect(dash.watch.dialogs).toEqual([]);
  });
});
