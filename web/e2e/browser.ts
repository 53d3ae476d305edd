/** Headless Chromium for the browser tests, and what they watch on each page. */

import { existsSync } from "node:fs";

import { chromium, type Browser, type BrowserContext, type Page, type WebSocket } from "playwright-core";
import { expect } from "vitest";

/** The system Chromium (Debian package `chromium`); override with PULSE_CHROMIUM. */
export const CHROMIUM = process.env.PULSE_CHROMIUM ?? "/usr/bin/chromium";

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install the Debian package \`chromium\` (scripts/test-web.sh does, as root) or set PULSE_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

export interface ContextOptions {
  /**
   * Lets the test hide and show the page ({@link setHidden}). Headless Chromium shows every page
   * (minimised windows and background tabs included), so the page's `visibilityState` is taken
   * over and `visibilitychange` fired as the browser would.
   */
  visibility?: boolean;
}

/**
 * A context whose pages record the Content Security Policy violations they report and the close
 * code of every WebSocket that closes ({@link closeCodes}).
 */
export async function newWatchedContext(browser: Browser, options: ContextOptions = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  await context.addInitScript(() => {
    const w = window as unknown as { __cspViolations: string[]; __closeCodes: number[] };
    w.__cspViolations = [];
    w.__closeCodes = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      w.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        this.addEventListener("close", (e) => w.__closeCodes.push(e.code));
      }
    };
  });
  if (options.visibility) {
    await context.addInitScript(() => {
      let hidden = false;
      Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
      Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
      (window as unknown as { __setHidden: (h: boolean) => void }).__setHidden = (h) => {
        hidden = h;
        document.dispatchEvent(new Event("visibilitychange"));
      };
    });
  }
  return context;
}

/** Close codes of the page's WebSockets that closed, in order. */
export async function closeCodes(page: Page): Promise<number[]> {
  return page.evaluate(() => (window as unknown as { __closeCodes?: number[] }).__closeCodes ?? []);
}

/** Hides or shows a page of a context made with `visibility`. */
export async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate((h) => (window as unknown as { __setHidden: (h: boolean) => void }).__setHidden(h), hidden);
}

/**
 * Stalls every timer and task of the page's main thread for `ms`, as a browser does to a
 * background tab (which runs its timers about once a minute), then lets them run, late.
 */
export async function stallMainThread(context: BrowserContext, page: Page, ms: number): Promise<void> {
  const cdp = await context.newCDPSession(page);
  try {
    await cdp.send("Debugger.enable");
    const paused = new Promise<void>((r) => cdp.once("Debugger.paused", () => r()));
    await cdp.send("Debugger.pause");
    // At the next task that runs script (the page's clock ticks every second).
    await Promise.race([paused, new Promise((_, reject) => setTimeout(() => reject(new Error("the page ran no script for 5 s")), 5_000))]);
    await new Promise((r) => setTimeout(r, ms));
    await cdp.send("Debugger.resume");
    await cdp.send("Debugger.disable");
  } finally {
    await cdp.detach().catch(() => undefined);
  }
}

/** A page of its own (fresh context, watched), logged in through the form and Live. */
export async function openLoggedIn(
  browser: Browser,
  stack: { webUrl: string; email: string; password: string },
  options: ContextOptions = {},
): Promise<{ context: BrowserContext; page: Page; watch: PageWatch }> {
  const context = await newWatchedContext(browser, options);
  const page = await context.newPage();
  const watch = new PageWatch(page);
  await page.goto(stack.webUrl);
  await logInWithForm(page, stack.email, stack.password);
  await waitLive(page);
  return { context, page, watch };
}

/** What happened on a page that the tests assert on. */
export class PageWatch {
  /** Document loads of the main frame: a full reload adds one; in-app navigation does not. */
  documentLoads = 0;
  readonly dialogs: string[] = [];
  readonly pageErrors: string[] = [];
  /** Every `/api/` request, in order. */
  readonly apiRequests: string[] = [];
  readonly sockets = new Set<WebSocket>();
  readonly openSockets = new Set<WebSocket>();
  /** Every text frame the page sent on any of its sockets, in order. */
  readonly framesSent: string[] = [];
  /** Messages the page received, counted by their `type`. */
  private readonly receivedByType = new Map<string, number>();

  constructor(readonly page: Page) {
    page.on("request", (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) this.documentLoads += 1;
      const url = new URL(request.url());
      if (url.pathname.startsWith("/api/")) this.apiRequests.push(`${request.method()} ${url.pathname}${url.search}`);
    });
    page.on("dialog", (dialog) => {
      this.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      void dialog.dismiss().catch(() => undefined);
    });
    page.on("pageerror", (error) => this.pageErrors.push(error.message));
    page.on("websocket", (socket) => {
      this.sockets.add(socket);
      this.openSockets.add(socket);
      socket.on("close", () => this.openSockets.delete(socket));
      socket.on("framesent", (frame) => {
        if (typeof frame.payload === "string") this.framesSent.push(frame.payload);
      });
      socket.on("framereceived", (frame) => {
        // Every message starts with its type: `{"type":"fleet",…`.
        const type = typeof frame.payload === "string" ? /^\{"type":"([a-z_]+)"/.exec(frame.payload)?.[1] : undefined;
        if (type) this.receivedByType.set(type, (this.receivedByType.get(type) ?? 0) + 1);
      });
    });
  }

  /** How many messages of `type` the page received so far. */
  received(type: string): number {
    return this.receivedByType.get(type) ?? 0;
  }

  /** How many frames of `action` the page sent so far. */
  sent(action: string): number {
    return this.framesSent.filter((f) => f.startsWith(`{"action":"${action}"`)).length;
  }

  async cspViolations(): Promise<string[]> {
    return this.page.evaluate(() => (window as unknown as { __cspViolations?: string[] }).__cspViolations ?? []);
  }
}

/** Logs in through the form on the login page that `page` shows. */
export async function logInWithForm(page: Page, email: string, password: string): Promise<void> {
  const form = page.getByTestId("login-page");
  await form.waitFor();
  await form.getByLabel("Email").fill(email);
  await form.getByLabel("Password").fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

/**
 * Asserts that `check` holds throughout the next `ms`: it is run every 50 ms and the first
 * failure fails the test. For what must *not* happen (a second copy arriving late, a dialog
 * opening), which no condition can be waited for.
 */
export async function holdsFor(ms: number, check: () => void | Promise<void>): Promise<void> {
  const until = Date.now() + ms;
  do {
    await check();
    await new Promise((r) => setTimeout(r, 50));
  } while (Date.now() < until);
  await check();
}

/** Waits until the header says Live. */
export async function waitLive(page: Page, timeout = 10_000): Promise<void> {
  await page.locator('[data-testid="connection"][data-state="live"]').waitFor({ timeout });
}

type StatId = "total" | "online" | "stale" | "alerts";

/** The number a stat card shows, or NaN for "—". */
export async function stat(page: Page, id: StatId): Promise<number> {
  const text = (await page.getByTestId(`stat-${id}-value`).textContent()) ?? "";
  return text.trim() === "—" ? Number.NaN : Number(text.replace(/,/g, ""));
}

/**
 * The number a stat card shows once its first snapshot is in: the header says "Live" when the
 * socket opens and the subscribes go out, and the snapshots they bring come a moment later, so a
 * baseline read at once can still be "—".
 */
export async function shownStat(page: Page, id: StatId, timeout = 3_000): Promise<number> {
  await expect.poll(() => stat(page, id), { timeout }).not.toBeNaN();
  return stat(page, id);
}

/**
 * What axe finds wrong on `page` (within `include`, a selector, when given), one line a rule: an
 * empty list is the aim. The tests run it in the states they stage, not only on a quiet page.
 */
export async function axeViolations(page: Page, include?: string): Promise<string[]> {
  const { AxeBuilder } = await import("@axe-core/playwright");
  const builder = new AxeBuilder({ page });
  const result = await (include ? builder.include(include) : builder).analyze();
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.length} × ${v.nodes[0]?.target.join(" ")} — ${v.help}`);
}

/**
 * Has the gateway refuse `page`'s subscribes to channels of `type` with error `code` (staged on
 * the socket: every other frame passes through to the real gateway). The refusal names the
 * channel as the gateway's would.
 */
export async function refuseSubscribes(page: Page, type: "device" | "events", code: string): Promise<void> {
  await page.routeWebSocket(/\/api\/v2\/ws/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((message) => {
      const text = typeof message === "string" ? message : message.toString();
      if (text.includes('"action":"subscribe"') && text.includes(`"type":"${type}"`)) {
        const request = JSON.parse(text) as { device_id?: string; topic?: string };
        const channel = type === "device" ? { device_id: request.device_id } : { topic: request.topic };
        ws.send(JSON.stringify({ type: "error", code, message: "staged refusal", channel: type, ...channel }));
        return;
      }
      server.send(message);
    });
  });
}
