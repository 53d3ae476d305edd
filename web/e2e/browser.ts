/** Headless Chromium for the browser tests, and what they watch on each page. */

import { existsSync } from "node:fs";

import { chromium, type Browser, type BrowserContext, type Page, type WebSocket } from "playwright-core";

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

/** Records, in every page of the context, the Content Security Policy violations it reports. */
export async function newWatchedContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  await context.addInitScript(() => {
    const w = window as unknown as { __cspViolations: string[] };
    w.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      w.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return context;
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
    });
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

/** Waits until the header says Live. */
export async function waitLive(page: Page, timeout = 10_000): Promise<void> {
  await page.locator('[data-testid="connection"][data-state="live"]').waitFor({ timeout });
}

/** The number a stat card shows, or NaN for "—". */
export async function stat(page: Page, id: "total" | "online" | "stale" | "alerts"): Promise<number> {
  const text = (await page.getByTestId(`stat-${id}-value`).textContent()) ?? "";
  return text.trim() === "—" ? Number.NaN : Number(text.replace(/,/g, ""));
}
