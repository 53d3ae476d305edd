/**
 * The dashboard in a real headless Chromium against a real Pulse stack of its own (database,
 * poller, two gateways, pulse-web). Data changes are plain SQL, as any writer would make them.
 * Each test logs in with a browser context of its own, so none depends on another's page; the
 * stack and its data are shared, so tests assert counts relative to what they found. After each
 * test, every page it opened must have run without a dialog, an uncaught error or a Content
 * Security Policy violation.
 */

import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { axeViolations, closeCodes, holdsFor, launchChromium, logInWithForm, newWatchedContext, openLoggedIn, PageWatch, refuseSubscribes, shownStat, stat, waitLive } from "./browser.js";
import { activitySeqs, closeAlert, insertAlert, insertDevice, insertReadings, siteOf, unrelayedEvents } from "./data.js";
import { natsPublish } from "./nats.js";
import { artifact, startStack, type Stack } from "./stack.js";

const DEVICES = 40;
const SITES = 4;
/** Seeded fleet: 30 report now (ONLINE), 4 reported 2 min ago (STALE), 6 never (OFFLINE). */
const ONLINE = 30;
const STALE = 4;
const HISTORY = 40;
const HOSTILE = "<img src=x onerror=alert(1)>";

let stack: Stack;
let browser: Browser;
let siteOf1: string;
/** The page of the running test, in a context of its own ({@link freshPage}). */
let context: BrowserContext | undefined;
let page: Page;
let watch: PageWatch;
/** Pages the running test opened besides its own. */
let extraWatches: PageWatch[] = [];

/** Gives the running test its own context and page, logged in and Live. */
async function freshPage(): Promise<void> {
  ({ context, page, watch } = await openLoggedIn(browser, stack));
}

/**
 * Runs `body` with a page in a context of its own (cookies, routes, network), logged in as
 * `email` and Live; `prepare` runs on the context first (to set routes). Closed after.
 */
async function inOwnContext(
  body: (p: Page, own: BrowserContext) => Promise<void>,
  { email = stack.email, prepare }: { email?: string; prepare?: (own: BrowserContext) => Promise<unknown> } = {},
): Promise<void> {
  const own = await newWatchedContext(browser);
  try {
    await prepare?.(own);
    const p = await own.newPage();
    extraWatches.push(new PageWatch(p));
    await p.goto(stack.webUrl);
    await logInWithForm(p, email, stack.password);
    await waitLive(p);
    await body(p, own);
  } finally {
    await own.close();
  }
}

const dev = (n: number) => `dev-${String(n).padStart(4, "0")}`;

function alertRow(p: Page, summary: string) {
  return p.locator("tr.alert-row").filter({ has: p.getByTestId("alert-summary").getByText(summary, { exact: true }) });
}

/** The entries of the Recent activity widget telling that the alert with `summary` was opened. */
function openedEntries(p: Page, summary: string) {
  return p
    .getByTestId("activity-list")
    .locator('li[data-event="alert:opened"]')
    .filter({ has: p.getByTestId("activity-summary").getByText(summary, { exact: true }) });
}

/** The `seq`s the Recent activity widget shows, top to bottom. */
async function shownActivity(p: Page): Promise<number[]> {
  return p.getByTestId("activity-list").locator("li").evaluateAll((items) => items.map((li) => Number((li as HTMLElement).dataset.seq)));
}

/** Subscribe frames the page sent for the activity topic, parsed. */
function activitySubscribes(w: PageWatch): { since?: number }[] {
  return w.framesSent
    .map((f) => {
      try {
        return JSON.parse(f) as { action?: string; type?: string; topic?: string; since?: number };
      } catch {
        return {};
      }
    })
    .filter((r) => r.action === "subscribe" && r.type === "events" && r.topic === "activity");
}

/** The first device row at or below the top of the device table's scroll view. */
async function topVisibleRow(p: Page): Promise<{ deviceId: string; offset: number }> {
  return p.getByTestId("devices-scroll").evaluate((el) => {
    const head = el.querySelector("th")?.getBoundingClientRect().bottom ?? el.getBoundingClientRect().top; // sticky header
    for (const row of el.querySelectorAll<HTMLElement>("tbody tr[data-device-id]")) {
      const top = row.getBoundingClientRect().top;
      if (top >= head) return { deviceId: row.dataset.deviceId ?? "", offset: top - el.getBoundingClientRect().top };
    }
    throw new Error("no visible device row");
  });
}

/** Where a device row is, relative to the top of the device table's scroll view. */
async function rowOffset(p: Page, deviceId: string): Promise<number> {
  return p.getByTestId("devices-scroll").evaluate((el, id) => {
    const row = el.querySelector(`tbody tr[data-device-id="${id}"]`);
    if (!row) throw new Error(`no row for ${id}`);
    return row.getBoundingClientRect().top - el.getBoundingClientRect().top;
  }, deviceId);
}

async function addAlert(summary: string, severity = 2, device = dev(1)): Promise<number> {
  return insertAlert(stack.db, stack.tenant, { deviceId: device, siteId: device === dev(1) ? siteOf1 : await siteOf(stack.db, stack.tenant, device), summary, severity });
}

beforeAll(async () => {
  stack = await startStack({ name: "dashboard", devices: DEVICES, sites: SITES });
  siteOf1 = await siteOf(stack.db, stack.tenant, dev(1));
  // Readings: a history for dev-0001, a current one for the ONLINE devices, old ones for STALE.
  const metrics = (i: number) => ({ temp_c: 20 + (i % 7) * 0.5, humidity_pct: 40 + (i % 5), battery_pct: 90 - i * 0.1 });
  await insertReadings(stack.db, stack.tenant, dev(1), Array.from({ length: HISTORY }, (_, i) => ({ secondsAgo: (HISTORY - i) * 5, metrics: metrics(i) })));
  for (let n = 1; n <= ONLINE; n++) await insertReadings(stack.db, stack.tenant, dev(n), [{ secondsAgo: 0, metrics: metrics(n) }]);
  for (let n = ONLINE + 1; n <= ONLINE + STALE; n++) await insertReadings(stack.db, stack.tenant, dev(n), [{ secondsAgo: 120, metrics: metrics(n) }]);
  await addAlert("Cabinet door open", 2, dev(3));
  await addAlert("Temperature 41.2 °C above limit", 4, dev(7));
  await addAlert("Battery at 12 %", 1, dev(12));

  browser = await launchChromium();
}, 180_000);

afterEach(async () => {
  const own = context;
  context = undefined;
  const watches = [...(own ? [watch] : []), ...extraWatches];
  extraWatches = [];
  try {
    for (const w of watches) {
      expect(w.dialogs).toEqual([]);
      expect(w.pageErrors).toEqual([]);
    }
    if (own && !page.isClosed()) expect(await watch.cspViolations()).toEqual([]);
  } finally {
    await own?.close();
  }
});

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await stack?.stop();
});

describe("dashboard in Chromium against a live stack", () => {
  it("logs in through the login form and shows Live with the seeded fleet", async () => {
    context = await newWatchedContext(browser);
    page = await context.newPage();
    watch = new PageWatch(page);
    await page.goto(stack.webUrl);
    await page.getByTestId("login-page").waitFor();
    expect(new URL(page.url()).pathname).toBe("/login");
    await page.screenshot({ path: artifact("01-login.png") });
    expect(await axeViolations(page)).toEqual([]);

    await logInWithForm(page, stack.email, stack.password);
    await waitLive(page);
    await expect.poll(() => page.getByTestId("connection").textContent()).toBe("Live");
    expect(new URL(page.url()).pathname).toBe("/");
    await expect.poll(() => stat(page, "total"), { timeout: 5_000 }).toBe(DEVICES);
    expect(await stat(page, "online")).toBe(ONLINE);
    expect(await stat(page, "stale")).toBe(STALE);
    // The alerts snapshot is a message of its own and may come after the fleet's.
    await expect.poll(() => stat(page, "alerts"), { timeout: 3_000 }).toBe(3);
    await expect.poll(() => page.getByTestId("devices-table").locator("tbody tr").count()).toBe(DEVICES);
    await expect.poll(() => page.getByTestId("alerts-table").locator("tbody tr.alert-row").count()).toBe(3);
    expect(watch.documentLoads).toBe(1);
    // The ticket travelled as a subprotocol the gateway accepted: no socket URL carries it.
    const socketUrls = [...watch.sockets].map((socket) => socket.url());
    expect(socketUrls.length).toBeGreaterThan(0);
    expect(socketUrls.filter((url) => url.includes("token="))).toEqual([]);
    await page.screenshot({ path: artifact("02-dashboard.png"), fullPage: true });
  });

  it("shows an alert inserted with SQL within 2 s, highlighted, without a reload or a poll", async () => {
    await freshPage();
    const loads = watch.documentLoads;
    const apiBefore = watch.apiRequests.length;
    const summary = `Pump pressure low ${Date.now()}`;
    await addAlert(summary, 3);
    const started = Date.now();
    const row = alertRow(page, summary);
    await row.waitFor({ timeout: 2_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await row.getAttribute("class")).toContain("is-new");
    expect(watch.documentLoads).toBe(loads);
    expect(await page.evaluate(() => performance.getEntriesByType("navigation").length)).toBe(1);
    // No REST while the socket is up (a token renewal is the only request allowed).
    expect(watch.apiRequests.slice(apiBefore).filter((r) => !r.includes("/api/v2/ws-ticket"))).toEqual([]);
    // The highlight fades: the class goes once its time is up.
    await expect.poll(async () => (await row.getAttribute("class")) ?? "", { timeout: 8_000 }).not.toContain("is-new");
  });

  it("shows the opening of an alert inserted with SQL in Recent activity within 2 s, exactly once", async () => {
    await freshPage();
    const widget = page.getByTestId("activity-widget");
    await widget.getByTestId("activity-list").waitFor({ timeout: 5_000 });
    expect(await widget.getByRole("heading", { name: "Recent activity" }).count()).toBe(1);
    // The first subscription of the page has no `since`: there was nothing to resume.
    expect(activitySubscribes(watch)[0]).toEqual({ action: "subscribe", type: "events", topic: "activity" });

    const summary = `Compressor tripped ${Date.now()}`;
    await addAlert(summary, 3);
    const started = Date.now();
    const entry = openedEntries(page, summary);
    await entry.first().waitFor({ timeout: 2_000 });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await entry.count()).toBe(1);
    expect(await entry.getByTestId("activity-summary").textContent()).toBe(summary);
    expect(await entry.getByRole("link", { name: dev(1), exact: true }).count()).toBe(1);
    // Nothing comes twice later, and the widget shows exactly the newest events the database has.
    await holdsFor(500, async () => expect(await entry.count()).toBe(1));
    await expect.poll(() => shownActivity(page), { timeout: 3_000 }).toEqual(await activitySeqs(stack.db, stack.tenant));
    await page.screenshot({ path: artifact("02b-recent-activity.png"), fullPage: true });
    expect(await axeViolations(page)).toEqual([]);
  });

  it("updates the stat cards: open alerts, and fleet counts after a device insert and its first reading", async () => {
    await freshPage();
    const open = await shownStat(page, "alerts");
    const id = await addAlert(`Valve stuck ${Date.now()}`, 2);
    await expect.poll(() => stat(page, "alerts"), { timeout: 3_000 }).toBe(open + 1);
    await closeAlert(stack.db, id);
    await expect.poll(() => stat(page, "alerts"), { timeout: 3_000 }).toBe(open);

    const total = await shownStat(page, "total");
    const online = await shownStat(page, "online");
    await insertDevice(stack.db, stack.tenant, "dev-new-1", siteOf1);
    await expect.poll(() => stat(page, "total"), { timeout: 3_000 }).toBe(total + 1);
    expect(await stat(page, "online")).toBe(online);
    const newRow = page.getByTestId("devices-table").locator('tr[data-device-id="dev-new-1"]');
    await expect.poll(() => newRow.getByTestId("device-status").textContent()).toBe("Offline");

    await insertReadings(stack.db, stack.tenant, "dev-new-1", [{ secondsAgo: 0, metrics: { temp_c: 19.5 } }]);
    await expect.poll(() => stat(page, "online"), { timeout: 3_000 }).toBe(online + 1);
    await expect.poll(() => newRow.getByTestId("device-status").textContent()).toBe("Online");
    expect(await newRow.getByTestId("device-last-seen").textContent()).toMatch(/just now|\d+ s ago/);
  });

  it("renders a hostile alert summary as text and runs nothing", async () => {
    await freshPage();
    await addAlert(HOSTILE, 4);
    const row = alertRow(page, HOSTILE);
    await row.waitFor({ timeout: 2_000 });
    expect(await row.getByTestId("alert-summary").textContent()).toBe(HOSTILE);
    expect(await row.locator("img").count()).toBe(0);
    // The details row renders the summary once more.
    await row.getByRole("button", { name: "Show details" }).click();
    const details = page.locator(".alert-details").filter({ hasText: HOSTILE });
    await details.waitFor();
    expect(await details.locator("img").count()).toBe(0);
    expect(await page.locator("img").count()).toBe(0);
    // An onerror handler would have fired by now.
    await holdsFor(300, () => expect(watch.dialogs).toEqual([]));
    await page.screenshot({ path: artifact("03-hostile-alert-as-text.png") });
    expect(await axeViolations(page)).toEqual([]);
    await row.getByRole("button", { name: "Hide details" }).click();
  });

  it("keeps open rows, focus and the scroll position through live updates", async () => {
    await freshPage();
    const firstRow = page.getByTestId("alerts-table").locator("tr.alert-row").first();
    const openedId = await firstRow.getAttribute("data-alert-id");
    await firstRow.getByRole("button", { name: "Show details" }).click();
    const scroller = page.getByTestId("devices-scroll");
    await scroller.evaluate((el) => (el.scrollTop = 200));
    expect(await scroller.evaluate((el) => el.scrollTop)).toBe(200);
    const anchorBefore = await topVisibleRow(page);
    const filter = page.getByTestId("device-filter");
    await filter.click();
    await filter.pressSequentially("dev");

    const online = await shownStat(page, "online");
    const summary = `Fan failure ${Date.now()}`;
    await addAlert(summary, 2);
    await insertReadings(stack.db, stack.tenant, dev(DEVICES), [{ secondsAgo: 0, metrics: { temp_c: 22 } }]);
    await alertRow(page, summary).waitFor({ timeout: 2_000 });
    await expect.poll(() => stat(page, "online"), { timeout: 3_000 }).toBe(online + 1);

    const opened = page.locator(`tr.alert-row[data-alert-id="${openedId}"]`);
    expect(await opened.getByRole("button", { name: "Hide details" }).getAttribute("aria-expanded")).toBe("true");
    expect(await page.evaluate(() => document.activeElement?.getAttribute("data-testid"))).toBe("device-filter");
    expect(await filter.inputValue()).toBe("dev");
    // The rows in view stay in view (the browser's scroll anchoring may move scrollTop by the
    // height of a row that moved from above the view to below it).
    expect(await scroller.evaluate((el) => el.scrollTop)).toBeGreaterThan(100);
    const anchorAfter = await rowOffset(page, anchorBefore.deviceId);
    expect(Math.abs(anchorAfter - anchorBefore.offset)).toBeLessThanOrEqual(2);

    await opened.getByRole("button", { name: "Hide details" }).click();
    await filter.fill("");
    await scroller.evaluate((el) => (el.scrollTop = 0));
  });

  it("shows an error card in the one widget that got a malformed message, and recovers", async () => {
    await freshPage();
    const total = await shownStat(page, "total");
    const malformed = {
      type: "alerts",
      tenant_id: stack.tenant,
      seq: Date.now() * 1000,
      ts: new Date().toISOString(),
      alerts: [{ alert_id: "not-a-number", summary: 42 }],
      total_open: 1,
    };
    await natsPublish(stack.natsUrl, `pulse.v1.${stack.tenant}.alerts`, JSON.stringify(malformed));
    const alertsWidget = page.getByTestId("alerts-widget");
    await alertsWidget.getByTestId("error-card").waitFor({ timeout: 3_000 });
    expect(await alertsWidget.getByTestId("error-card").textContent()).toContain("alerts[0].");
    expect(await stat(page, "alerts")).toBeNaN();
    // The other widgets go on: the fleet still updates.
    expect(await page.getByTestId("devices-widget").getByTestId("error-card").count()).toBe(0);
    await insertDevice(stack.db, stack.tenant, "dev-new-2", siteOf1);
    await expect.poll(() => stat(page, "total"), { timeout: 3_000 }).toBe(total + 1);
    await page.screenshot({ path: artifact("04-malformed-message-error-card.png") });
    expect(await axeViolations(page)).toEqual([]);

    // The next valid alerts message brings the widget back.
    const summary = `Recovered ${Date.now()}`;
    await addAlert(summary, 2);
    await alertRow(page, summary).waitFor({ timeout: 3_000 });
    expect(await alertsWidget.getByTestId("error-card").count()).toBe(0);
    expect(await stat(page, "alerts")).toBeGreaterThan(0);

    // A push whose envelope breaks the contract (a fleet without `counts`) is refused by the
    // client before any widget reads it; its widget says so all the same, and recovers.
    const total2 = await shownStat(page, "total");
    const envelopeBroken = { type: "fleet", tenant_id: stack.tenant, seq: Date.now() * 1000, ts: new Date().toISOString(), devices: [] };
    await natsPublish(stack.natsUrl, `pulse.v1.${stack.tenant}.fleet`, JSON.stringify(envelopeBroken));
    const devicesWidget = page.getByTestId("devices-widget");
    await devicesWidget.getByTestId("error-card").waitFor({ timeout: 3_000 });
    expect(await devicesWidget.getByTestId("error-card").textContent()).toContain("counts");
    expect(await alertsWidget.getByTestId("error-card").count()).toBe(0);
    await insertDevice(stack.db, stack.tenant, "dev-new-3", siteOf1);
    await expect.poll(() => stat(page, "total"), { timeout: 3_000 }).toBe(total2 + 1);
    expect(await devicesWidget.getByTestId("error-card").count()).toBe(0);
  });

  it("shows Reconnecting… when both gateways die, falls back to REST, recovers to Live by itself, and still gets alerts", async () => {
    await freshPage();
    const loads = watch.documentLoads;
    await stack.killGateways();
    const connection = page.getByTestId("connection");
    await expect.poll(() => connection.getAttribute("data-state"), { timeout: 5_000 }).toMatch(/^(reconnecting|offline)$/);
    // While no gateway answers, the page falls back to REST (after 5 s) and still shows changes.
    // The change is made at once, before the first poll: the checks below can take longer
    // than those 5 s on a loaded machine, and a change made after the first poll waits 30 s
    // for the next.
    const during = `During the outage ${Date.now()}`;
    await addAlert(during, 2);
    expect(await connection.textContent()).toMatch(/^(Reconnecting…|Offline)/);
    await page.screenshot({ path: artifact("05-reconnecting.png") });
    expect(await axeViolations(page)).toEqual([]);

    await page.locator(".connection__polling").waitFor({ timeout: 10_000 });
    await alertRow(page, during).waitFor({ timeout: 5_000 });
    expect(watch.apiRequests.some((r) => r.startsWith("GET /api/v2/alerts?status=OPEN"))).toBe(true);

    // One gateway comes back. The client retries with full-jitter backoff capped at 30 s and,
    // after a gateway could not be reached, tries the other one next: it is Live again within
    // two attempts, at most about 60 s (usually a few seconds).
    await stack.startGateway(0);
    await waitLive(page, 75_000);
    expect(await page.locator(".connection__polling").count()).toBe(0);
    await stack.startGateway(1);
    const summary = `After the outage ${Date.now()}`;
    await addAlert(summary, 3);
    await alertRow(page, summary).waitFor({ timeout: 3_000 });
    expect(watch.documentLoads).toBe(loads);
  }, 120_000);

  it("keeps Recent activity exact through an outage of both gateways: what happened meanwhile shows once", async () => {
    await freshPage();
    await waitLive(page);
    const subscribesBefore = activitySubscribes(watch).length;
    await stack.killGateways();
    await expect.poll(() => page.getByTestId("connection").getAttribute("data-state"), { timeout: 5_000 }).toMatch(/^(reconnecting|offline)$/);

    const during = `Activity while no gateway runs ${Date.now()}`;
    await addAlert(during, 2);
    // It happened meanwhile: its event is on NATS before a gateway is back.
    await expect.poll(() => unrelayedEvents(stack.db, stack.tenant), { timeout: 5_000 }).toBe(0);
    await Promise.all([stack.startGateway(0), stack.startGateway(1)]);
    await waitLive(page, 75_000);

    // Resumed, whether the entry came over the fallback poll or the replay after `since`.
    const entry = openedEntries(page, during);
    await entry.first().waitFor({ timeout: 5_000 });
    const resumed = activitySubscribes(watch).slice(subscribesBefore);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    for (const request of resumed) expect(typeof request.since).toBe("number");
    await holdsFor(1_000, async () => expect(await entry.count()).toBe(1));

    // Live again: the next one arrives once, and the list is the database's, no seq twice.
    const after = `Activity after the gateways came back ${Date.now()}`;
    await addAlert(after, 2);
    await openedEntries(page, after).first().waitFor({ timeout: 2_000 });
    await holdsFor(500, async () => expect(await openedEntries(page, after).count()).toBe(1));
    expect(await entry.count()).toBe(1);
    await expect.poll(() => shownActivity(page), { timeout: 3_000 }).toEqual(await activitySeqs(stack.db, stack.tenant));
  }, 120_000);

  it("loads Recent activity by itself after its first load failed, and then shows live events", async () => {
    let refused = 0;
    const failOnce = (own: BrowserContext) =>
      own.route("**/api/v2/events?topic=activity*", (route) => {
        if (refused > 0) return route.continue();
        refused += 1;
        return route.fulfill({ status: 502, contentType: "text/plain", body: "bad gateway" });
      });
    await inOwnContext(
      async (p) => {
        // Nobody clicks Retry: the feed asks again by itself, and live events then show.
        const summary = `Activity after a failed first load ${Date.now()}`;
        await addAlert(summary, 2);
        await openedEntries(p, summary).first().waitFor({ timeout: 10_000 });
        expect(refused).toBe(1);
        await expect.poll(() => shownActivity(p), { timeout: 5_000 }).toEqual(await activitySeqs(stack.db, stack.tenant));
      },
      { prepare: failOnce },
    );
  });

  it("delivers the same update to a second tab", async () => {
    await freshPage();
    const second = await context!.newPage();
    const secondWatch = new PageWatch(second);
    extraWatches.push(secondWatch);
    await second.goto(stack.webUrl);
    await waitLive(second);
    const summary = `Seen in both tabs ${Date.now()}`;
    await addAlert(summary, 2);
    await Promise.all([alertRow(page, summary).waitFor({ timeout: 2_000 }), alertRow(second, summary).waitFor({ timeout: 2_000 })]);
    expect(await stat(second, "alerts")).toBe(await stat(page, "alerts"));
    await second.close();
  });

  it("shows a device page with its chart, its REST history and live readings", async () => {
    await freshPage();
    const loads = watch.documentLoads;
    await page.getByTestId("devices-table").getByRole("link", { name: dev(1), exact: true }).click();
    await page.getByTestId("device-page").waitFor();
    expect(new URL(page.url()).pathname).toBe(`/devices/${dev(1)}`);
    // The navigation moved focus to the new page's heading, and the title names the page.
    await expect.poll(() => page.evaluate(() => document.activeElement?.tagName + ":" + document.activeElement?.textContent)).toBe(`H1:${dev(1)}`);
    expect(await page.title()).toBe(`${dev(1)} · Pulse`);
    const count = page.getByTestId("reading-count");
    await expect.poll(async () => Number(await count.getAttribute("data-count")), { timeout: 5_000 }).toBeGreaterThanOrEqual(HISTORY);
    const charts = page.getByTestId("chart");
    await expect.poll(() => charts.count()).toBeGreaterThanOrEqual(3);
    const tempChart = page.locator('figure[data-metric="temp_c"]').getByTestId("chart");
    expect(await tempChart.locator("canvas").count()).toBe(1);
    const pointsBefore = Number(await tempChart.getAttribute("data-points"));
    expect(pointsBefore).toBeGreaterThanOrEqual(HISTORY);
    expect(await page.getByTestId("readings-table").locator("tbody tr").count()).toBeGreaterThan(5);
    const readingsBefore = Number(await count.getAttribute("data-count"));

    await insertReadings(stack.db, stack.tenant, dev(1), [{ secondsAgo: 0, metrics: { temp_c: 77.7, humidity_pct: 51, battery_pct: 80 } }]);
    const latestTemp = page.getByTestId("latest-reading").locator('[data-metric="temp_c"] .metric__value');
    await expect.poll(() => latestTemp.textContent(), { timeout: 3_000 }).toBe("77.7");
    expect(Number(await count.getAttribute("data-count"))).toBe(readingsBefore + 1);
    expect(Number(await count.getAttribute("data-live"))).toBeGreaterThanOrEqual(1);
    expect(Number(await tempChart.getAttribute("data-points"))).toBe(pointsBefore + 1);
    expect(await page.locator('figure[data-metric="temp_c"] .chart__value').textContent()).toBe("77.7");
    // Subscribed and updating: no staleness shown.
    expect(await page.getByTestId("latest-widget").getByTestId("widget-stale").count()).toBe(0);
    await page.screenshot({ path: artifact("06-device-page.png"), fullPage: true });

    await page.getByRole("link", { name: "← All devices" }).click();
    await page.getByTestId("dashboard").waitFor();
    expect(watch.documentLoads).toBe(loads);
    await expect.poll(() => page.evaluate(() => document.activeElement?.textContent)).toBe("Fleet overview");
  });

  it("fits a phone: nothing wider than a 390 px screen on the dashboard and a device page", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    try {
      const p = await phone.newPage();
      await p.goto(stack.webUrl);
      await logInWithForm(p, stack.email, stack.password);
      await waitLive(p);
      await expect.poll(() => stat(p, "total"), { timeout: 5_000 }).toBeGreaterThan(0);
      const overflow = () => p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(await overflow()).toBeLessThanOrEqual(0);
      for (const id of ["connection", "stat-total-value", "alerts-widget", "devices-widget"]) {
        const box = await p.getByTestId(id).boundingBox();
        expect(box, id).not.toBeNull();
        expect(box!.x, id).toBeGreaterThanOrEqual(0);
        expect(box!.x + box!.width, id).toBeLessThanOrEqual(390);
      }
      await p.screenshot({ path: artifact("10-phone-dashboard.png"), fullPage: true });
      expect(await axeViolations(p)).toEqual([]);
      await p.goto(`${stack.webUrl}/devices/${dev(1)}`);
      await p.getByTestId("device-page").waitFor();
      await expect.poll(() => p.getByTestId("chart").count(), { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
      expect(await overflow()).toBeLessThanOrEqual(0);
      await p.screenshot({ path: artifact("11-phone-device.png"), fullPage: true });
      expect(await axeViolations(p)).toEqual([]);
    } finally {
      await phone.close();
    }
  });

  it("says a widget is not updating when the gateway refuses its subscription, under a live connection", async () => {
    await freshPage();
    // A tab whose device subscribes the gateway refuses for now.
    const p = await context!.newPage();
    await refuseSubscribes(p, "device", "unavailable");
    try {
      await p.goto(`${stack.webUrl}/devices/${dev(1)}`);
      await p.getByTestId("device-page").waitFor();
      await expect.poll(() => p.getByTestId("connection").getAttribute("data-state"), { timeout: 10_000 }).toBe("live");
      const stale = p.getByTestId("latest-widget").getByTestId("widget-stale");
      await expect.poll(() => stale.textContent(), { timeout: 10_000 }).toContain("Not live: unavailable, retrying");
      // The reason stays on show while the client asks again.
      await expect.poll(() => stale.getAttribute("title"), { timeout: 5_000 }).toBe("unavailable");
      // The other widgets' subscriptions went through: they show nothing of the kind.
      await p.getByRole("link", { name: "← All devices" }).click();
      await p.getByTestId("dashboard").waitFor();
      await expect.poll(() => p.getByTestId("widget-stale").count(), { timeout: 5_000 }).toBe(0);
    } finally {
      await p.close();
    }
  });

  it("says why the activity feed is not live when the gateway refuses its events, and names an unknown device in a heading", async () => {
    await freshPage();
    // The gateway refuses the activity topic for now.
    const p = await context!.newPage();
    const pageWatch = new PageWatch(p);
    await refuseSubscribes(p, "events", "rate_limited");
    try {
      await p.goto(stack.webUrl);
      await p.getByTestId("dashboard").waitFor();
      await expect.poll(() => p.getByTestId("connection").getAttribute("data-state"), { timeout: 10_000 }).toBe("live");
      const stale = p.getByTestId("activity-widget").getByTestId("widget-stale");
      // The reason is on show, not only in a tooltip.
      await expect.poll(() => stale.textContent(), { timeout: 10_000 }).toBe("Not live: rate_limited, retrying; refreshed every 30 s");
      // The alerts and devices went through: their widgets say nothing of the kind.
      await expect.poll(() => p.getByTestId("widget-stale").count(), { timeout: 5_000 }).toBe(1);

      await p.goto(`${stack.webUrl}/devices/no-such-device`);
      await p.getByTestId("device-not-found").waitFor();
      expect(await p.getByRole("heading", { level: 1 }).textContent()).toBe("no-such-device");
      expect(await p.getByTestId("error-card").textContent()).toContain("There is no device no-such-device in this tenant.");
      // Nor is its channel held: `unknown_device` is retried (for a device added a moment ago),
      // and after the API's 404 no subscribe for it goes out again (the first retry would be
      // within a second).
      const subscribes = () => pageWatch.framesSent.filter((f) => f.includes('"action":"subscribe"') && f.includes('"device_id":"no-such-device"')).length;
      const sent = subscribes();
      await holdsFor(3_000, () => expect(subscribes()).toBe(sent));
      expect(await axeViolations(p)).toEqual([]);
    } finally {
      await p.close();
    }
  });

  it("has no accessibility violations (axe) on the dashboard and a device page", async () => {
    await freshPage();
    const found: string[] = [];
    const p = await context!.newPage();
    try {
      for (const path of ["/", `/devices/${dev(1)}`]) {
        await p.goto(`${stack.webUrl}${path}`);
        await p.getByTestId(path === "/" ? "dashboard" : "device-page").waitFor();
        await expect.poll(() => p.getByTestId("connection").getAttribute("data-state"), { timeout: 10_000 }).toBe("live");
        for (const v of await axeViolations(p)) found.push(`${path} ${v}`);
      }
    } finally {
      await p.close();
    }
    expect(found).toEqual([]);
  });

  it("recovers by itself from a ticket endpoint that hangs: REST meanwhile, then Live", async () => {
    const own = await newWatchedContext(browser);
    try {
      // The ticket endpoint takes requests and never answers them.
      let hung = 0;
      await own.route("**/api/v2/ws-ticket", () => {
        hung += 1;
      });
      const p = await own.newPage();
      extraWatches.push(new PageWatch(p));
      await p.goto(stack.webUrl);
      await logInWithForm(p, stack.email, stack.password);
      // Not stuck: the page falls back to REST and shows the fleet while no ticket comes…
      await p.locator(".connection__polling").waitFor({ timeout: 15_000 });
      await expect.poll(() => stat(p, "total"), { timeout: 10_000 }).toBeGreaterThanOrEqual(DEVICES);
      // …and the attempt's deadline ends the hung request, so the client asks again.
      await expect.poll(() => hung, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
      expect(await p.getByTestId("connection").getAttribute("data-state")).not.toBe("live");
      // Once the endpoint answers again, the next attempt goes Live without a reload.
      await own.unroute("**/api/v2/ws-ticket");
      await waitLive(p, 30_000);
      await p.screenshot({ path: artifact("12-after-hung-ticket.png") });
      expect(await axeViolations(p)).toEqual([]);
    } finally {
      await own.close();
    }
  });

  it("moves to the other gateway when its own drains (1012), without a reload", async () => {
    const own = await newWatchedContext(browser);
    let drained: number | undefined;
    try {
      const p = await own.newPage();
      const w = new PageWatch(p);
      extraWatches.push(w);
      await p.goto(stack.webUrl);
      await logInWithForm(p, stack.email, stack.password);
      await waitLive(p);
      const port = (socket: { url(): string }) => Number(new URL(socket.url()).port);
      const [first] = [...w.openSockets];
      expect(first).toBeDefined();
      drained = stack.gatewayPorts.indexOf(port(first!));
      expect(drained).toBeGreaterThanOrEqual(0);
      const closed = new Promise<void>((r) => first!.once("close", () => r()));
      const loads = w.documentLoads;
      await stack.drainGateway(drained);
      await closed;
      // Back to Live on the other gateway, by itself.
      await waitLive(p, 15_000);
      await expect.poll(() => [...w.openSockets].map(port), { timeout: 5_000 }).toEqual([stack.gatewayPorts[1 - drained]]);
      expect(w.documentLoads).toBe(loads);
      // And live data still flows through it.
      const summary = `After the drain ${Date.now()}`;
      await addAlert(summary, 2);
      await alertRow(p, summary).waitFor({ timeout: 3_000 });
    } finally {
      await own.close();
      if (drained !== undefined && drained >= 0) await stack.startGateway(drained);
    }
  });

  it("asks again by itself when Pulse was not reachable at load, with no click", async () => {
    const own = await newWatchedContext(browser);
    try {
      // pulse-web is away (a deploy, a VPN not up yet): the session check fails outright.
      let refused = 0;
      await own.route("**/api/v2/me", (route) => {
        refused += 1;
        return route.abort("connectionrefused");
      });
      const p = await own.newPage();
      extraWatches.push(new PageWatch(p));
      await p.goto(stack.webUrl);
      await p.getByText("Pulse is not reachable").waitFor({ timeout: 10_000 });
      // Asked again, by itself, while it stays away…
      await expect.poll(() => refused, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
      // …and once it answers, the page goes on: here, to the login form.
      await own.unroute("**/api/v2/me");
      await p.getByTestId("login-page").waitFor({ timeout: 40_000 });
    } finally {
      await own.close();
    }
  });

  it("sends the user to the login page when the ticket endpoint answers 401", async () => {
    await inOwnContext(async (p, own) => {
      await own.clearCookies(); // the session is gone
      await own.setOffline(true);
      await expect.poll(() => p.getByTestId("connection").getAttribute("data-state"), { timeout: 5_000 }).toBe("offline");
      // Offline, and how old what is on show is: it was live until now.
      expect(await p.getByTestId("connection").textContent()).toMatch(/^Offline\b.*as of \d\d:\d\d:\d\d$/);
      await own.setOffline(false); // reconnecting asks for a ticket: 401
      await p.getByTestId("login-page").waitFor({ timeout: 10_000 });
      expect(new URL(p.url()).pathname).toBe("/login");
      expect(await p.getByRole("status").textContent()).toContain("session has ended");
    });
  });

  it("sends a user who is deleted while the page is live to the login page (4003), not to an offline page", async () => {
    const email = `deleted-${Date.now()}@${stack.tenant}.example`;
    await stack.db.query("INSERT INTO users (email, password_hash, tenant_id, role) SELECT $1, password_hash, tenant_id, role FROM users WHERE email = $2", [
      email,
      stack.email,
    ]);
    await inOwnContext(
      async (p) => {
        await stack.db.query("DELETE FROM users WHERE email = $1", [email]);
        await p.getByTestId("login-page").waitFor({ timeout: 10_000 });
        expect(await closeCodes(p)).toContain(4003);
        expect(new URL(p.url()).pathname).toBe("/login");
      },
      { email },
    );
  });

  it("logs out everywhere: the user's page in another browser goes to the login page at once, another user's stays", async () => {
    await freshPage();
    const email = `everywhere-${Date.now()}@${stack.tenant}.example`;
    await stack.db.query("INSERT INTO users (email, password_hash, tenant_id, role) SELECT $1, password_hash, tenant_id, role FROM users WHERE email = $2", [
      email,
      stack.email,
    ]);
    const sessionStatus = (p: Page) => p.evaluate(() => fetch("/api/v2/me").then((r) => r.status));
    await inOwnContext(
      async (elsewhere) => {
        await inOwnContext(
          async (here) => {
            await here.getByTestId("logout-everywhere").click();
            await here.getByTestId("login-page").waitFor({ timeout: 5_000 });
            expect(await here.getByRole("status").textContent()).toContain("You are logged out everywhere.");
            expect(await sessionStatus(here)).toBe(401);
          },
          { email },
        );
        // The other browser's session ended too, and its WebSocket is closed (4001) within
        // moments, not when its ticket expires: its page asks for a login, without a reload.
        expect(await sessionStatus(elsewhere)).toBe(401);
        await elsewhere.getByTestId("login-page").waitFor({ timeout: 10_000 });
        expect(await closeCodes(elsewhere)).toContain(4001);
      },
      { email },
    );
    expect(await sessionStatus(page)).toBe(200);
    await stack.db.query("DELETE FROM users WHERE email = $1", [email]);
  });

  it("logs out: a page of the same session in another browser (the cookie copied) stops being live at once", async () => {
    await freshPage();
    await inOwnContext(async (here, own) => {
      // Another browser, no tab of this one: no broadcast between tabs reaches it, only what
      // the gateways are told. Its ticket lives a minute, far past the wait below.
      const elsewhere = await newWatchedContext(browser);
      try {
        await elsewhere.addCookies(await own.cookies());
        const copy = await elsewhere.newPage();
        extraWatches.push(new PageWatch(copy));
        await copy.goto(stack.webUrl);
        await waitLive(copy);
        await here.getByTestId("logout").click();
        await here.getByTestId("login-page").waitFor({ timeout: 5_000 });
        // Its WebSocket closed (4001) within moments; the fresh ticket it then asks for is
        // refused, and it asks for a login.
        await copy.getByTestId("login-page").waitFor({ timeout: 8_000 });
        expect(await closeCodes(copy)).toContain(4001);
      } finally {
        await elsewhere.close();
      }
    });
  });

  it("logs out: back to the login page, the session and the socket closed; a failed logout says so", async () => {
    await freshPage();
    const loads = watch.documentLoads;
    // The server does not end the session: the user is told, stays signed in, and can retry.
    await page.route("**/api/v2/logout", (route) => route.fulfill({ status: 503, body: "unavailable" }));
    await page.getByTestId("logout").click();
    await page.getByTestId("logout-error").waitFor({ timeout: 5_000 });
    expect(await page.getByTestId("logout-error").textContent()).toContain("Not logged out");
    expect(await page.getByTestId("login-page").count()).toBe(0);
    expect(await page.evaluate(() => fetch("/api/v2/me").then((r) => r.status))).toBe(200);
    await page.unroute("**/api/v2/logout");
    // From a device page, with desktop notifications opted into: the next user of the browser
    // starts at the overview, with neither this user's page nor their opt-in.
    await page.getByTestId("devices-table").getByRole("link", { name: dev(1), exact: true }).click();
    await page.getByTestId("device-page").waitFor();
    await page.evaluate(() => localStorage.setItem("pulse.notify-critical", "on"));
    await page.getByTestId("logout").click();
    await page.getByTestId("login-page").waitFor({ timeout: 5_000 });
    expect(new URL(page.url()).pathname).toBe("/login");
    expect(new URL(page.url()).search).toBe("");
    expect(await page.evaluate(() => localStorage.getItem("pulse.notify-critical"))).toBeNull();
    expect(await page.title()).toBe("Sign in · Pulse");
    expect(await page.evaluate(() => fetch("/api/v2/me").then((r) => r.status))).toBe(401);
    await expect.poll(() => watch.openSockets.size, { timeout: 3_000 }).toBe(0);
    expect(watch.documentLoads).toBe(loads);
  });
});
