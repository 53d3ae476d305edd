/**
 * A gateway that refuses a connection right after the upgrade, in a real headless Chromium, on a
 * stack of its own whose two gateways let a user hold one connection each: a third page of the
 * same user is taken on every upgrade and closed at once with 4029. Such a page must never show
 * Live, not even for the moment between the upgrade and the close.
 */

import type { BrowserContext } from "playwright-core";
import { describe, expect, it } from "vitest";

import { axeViolations, closeCodes, logInWithForm, newWatchedContext, openLoggedIn, waitLive } from "./browser.js";
import { stackAndBrowser } from "./suite.js";

const suite = stackAndBrowser({ name: "refusal", devices: 3, sites: 1, gatewayEnv: { PULSE_MAX_CONNECTIONS_PER_USER: "1" } });

/** Records every state the page's connection indicator shows, from the first render on. */
async function recordIndicatorStates(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const w = window as unknown as { __indicatorStates: string[] };
    w.__indicatorStates = [];
    const note = () => {
      const state = document.querySelector('[data-testid="connection"]')?.getAttribute("data-state");
      if (state && w.__indicatorStates.at(-1) !== state) w.__indicatorStates.push(state);
    };
    new MutationObserver(note).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  });
}

describe("a connection refused right after the upgrade", () => {
  it("never shows Live while every gateway refuses it, and goes Live once one takes it", async () => {
    // The user's one connection on each gateway.
    const first = await openLoggedIn(suite.browser, suite.stack);
    const second = await openLoggedIn(suite.browser, suite.stack);
    const context = await newWatchedContext(suite.browser);
    try {
      await recordIndicatorStates(context);
      const page = await context.newPage();
      await page.goto(suite.stack.webUrl);
      await logInWithForm(page, suite.stack.email, suite.stack.password);
      // Taken and refused at least twice (the gateway asks for 5 s between attempts).
      await expect
        .poll(async () => (await closeCodes(page)).filter((code) => code === 4029).length, { timeout: 30_000, interval: 100 })
        .toBeGreaterThanOrEqual(2);
      const shown = () => page.evaluate(() => (window as unknown as { __indicatorStates: string[] }).__indicatorStates);
      expect(await shown()).not.toContain("live");
      // However it says that it is not live, it says it readably.
      expect(await axeViolations(page)).toEqual([]);
      // One of the others leaves: the next attempt is taken, and the page goes Live.
      await first.context.close();
      await waitLive(page, 30_000);
      expect(await shown()).toContain("live");
    } finally {
      await context.close();
      await first.context.close().catch(() => undefined);
      await second.context.close();
    }
  }, 90_000);
});
