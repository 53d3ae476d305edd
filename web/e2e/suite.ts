/**
 * The frame of a browser test file: a stack of its own and a Chromium, started before the
 * file's first test and stopped after its last, also when one fails.
 */

import type { Browser } from "playwright-core";
import { afterAll, beforeAll } from "vitest";

import { launchChromium } from "./browser.js";
import { startStack, type Stack, type StackOptions } from "./stack.js";

/** What the file's tests use; set once `beforeAll` has run. */
export interface Suite {
  stack: Stack;
  browser: Browser;
}

/** Registers the hooks that start and stop the file's stack (`options`) and browser. */
export function stackAndBrowser(options: StackOptions): Suite {
  const suite = {} as Suite;
  beforeAll(async () => {
    suite.stack = await startStack(options);
    suite.browser = await launchChromium();
  }, 180_000);
  afterAll(async () => {
    await suite.browser?.close().catch(() => undefined);
    await suite.stack?.stop();
  });
  return suite;
}
