/**
 * The web service's REST API as the dashboard uses it: the session (login, logout, me) and
 * JSON reads. A 401 on a read means the session is gone: it calls the handler set with
 * {@link onSessionLost}, which sends the user to the login page. Every request has a deadline
 * ({@link REQUEST_TIMEOUT_MS}): a hung endpoint ends in an error the page shows with a retry,
 * never in a page that loads for ever.
 *
 * @packageDocumentation
 */

import { checkMe, type Me } from "../model/validate.js";
import { noteServerDate } from "./clock.js";

/**
 * A request that got an error answer; `message` is the API's message when it sent one, and
 * `retryAfterMs` the wait its `Retry-After` asked for (a 503 `busy`, a 429), when it named one.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/**
 * The wait a `Retry-After` header asks for, in milliseconds: a number of seconds, or an HTTP
 * date. A date is the server's, so it is counted from the answer's own `Date` (`serverDate`)
 * when there is one: a browser clock two minutes fast would otherwise cut the wait to nothing.
 * Never negative; `undefined` when there is no header or it is neither form.
 */
export function retryAfterMs(header: string | null, serverDate: string | null, now: number = Date.now()): number | undefined {
  const value = header?.trim() ?? "";
  if (/^\d+$/.test(value)) {
    const seconds = Number(value);
    return Number.isSafeInteger(seconds * 1000) ? seconds * 1000 : undefined;
  }
  // Only what reads as a date: `Date.parse` also takes "2026" or "1.5" for one. HTTP dates are
  // GMT; the obsolete asctime form says no zone, which `Date.parse` would take for local time.
  if (!/[a-z]/i.test(value)) return undefined;
  const at = Date.parse(/(GMT|UTC|Z|[+-]\d{4})$/i.test(value) ? value : `${value} GMT`);
  if (Number.isNaN(at)) return undefined;
  const server = serverDate === null ? Number.NaN : Date.parse(serverDate);
  return Math.max(0, at - (Number.isNaN(server) ? now : server));
}

/** A request given up at its deadline. */
export class TimeoutError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/** How long a request (its answer and body) may take before it is given up. */
export const REQUEST_TIMEOUT_MS = 15_000;

/**
 * Runs `request` with a signal that aborts at `signal` or after `timeoutMs`, whichever comes
 * first; a request cut by the deadline fails with a message fit to show.
 */
async function within<T>(signal: AbortSignal | undefined, timeoutMs: number, request: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    return await request(signal ? eitherSignal(signal, deadline) : deadline);
  } catch (error) {
    if (deadline.aborted && !signal?.aborted) throw new TimeoutError(`No answer within ${timeoutMs / 1000} s.`, { cause: error });
    throw error;
  }
}

/**
 * A signal that aborts with whichever of `a` and `b` aborts first. `AbortSignal.any` where the
 * browser has it; browsers the build still targets lack it (Chrome before 116, Firefox before
 * 124, Safari before 17.4), and without this every read given a signal would throw there.
 */
export function eitherSignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (typeof AbortSignal.any === "function") return AbortSignal.any([a, b]);
  const either = new AbortController();
  const first = [a, b].find((s) => s.aborted);
  if (first) {
    either.abort(first.reason);
    return either.signal;
  }
  const stop = new AbortController();
  for (const s of [a, b]) {
    s.addEventListener(
      "abort",
      () => {
        either.abort(s.reason);
        stop.abort();
      },
      { once: true, signal: stop.signal },
    );
  }
  return either.signal;
}

let sessionLost: () => void = () => {};

/** Sets what happens when a request finds the session gone (HTTP 401). */
export function onSessionLost(handler: () => void): void {
  sessionLost = handler;
}

/** Tells the app that the session is gone (also used by the ticket fetcher). */
export function reportSessionLost(): void {
  sessionLost();
}

async function errorOf(response: Response): Promise<HttpError> {
  let message = `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { message?: unknown } };
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not JSON: keep the status.
  }
  return new HttpError(response.status, message, retryAfterMs(response.headers.get("Retry-After"), response.headers.get("Date")));
}

/**
 * GET `url` for JSON with the session cookie, never from a cache; the answer's `Date` tells the
 * dashboard's clock the server's time.
 */
async function get(url: string, signal: AbortSignal): Promise<Response> {
  const sentAt = Date.now();
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store", signal });
  noteServerDate(response.headers.get("Date"), sentAt, Date.now());
  return response;
}

/** GET `url` as JSON with the session cookie, within `timeoutMs`. */
export async function getJson(url: string, signal?: AbortSignal, timeoutMs = REQUEST_TIMEOUT_MS): Promise<unknown> {
  return within(signal, timeoutMs, async (signal) => {
    const response = await get(url, signal);
    if (response.status === 401) reportSessionLost();
    if (!response.ok) throw await errorOf(response);
    return (await response.json()) as unknown;
  });
}

/** The logged-in user, or `null` when there is no session. */
export async function fetchMe(timeoutMs = REQUEST_TIMEOUT_MS): Promise<Me | null> {
  return within(undefined, timeoutMs, async (signal) => {
    const response = await get("/api/v2/me", signal);
    if (response.status === 401) return null;
    if (!response.ok) throw await errorOf(response);
    const checked = checkMe(await response.json());
    if (!checked.ok) throw new Error(`unexpected answer from /api/v2/me: ${checked.error}`);
    return checked.value;
  });
}

/** Logs in; throws an {@link HttpError} whose message is fit to show on the form. */
export async function login(email: string, password: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Me> {
  return within(undefined, timeoutMs, async (signal) => {
    const response = await fetch("/api/v2/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email, password }),
      signal,
    });
    if (response.status === 401) throw new HttpError(401, "Wrong email or password.");
    if (response.status === 429) {
      const wait = retryAfterMs(response.headers.get("Retry-After"), response.headers.get("Date"));
      const when = wait === undefined ? " later" : ` in ${Math.max(1, Math.ceil(wait / 1000))} s`;
      throw new HttpError(429, `Too many failed attempts. Try again${when}.`, wait);
    }
    if (!response.ok) throw await errorOf(response);
    const checked = checkMe(await response.json());
    if (!checked.ok) throw new Error(`unexpected answer from /api/v2/login: ${checked.error}`);
    return checked.value;
  });
}

/** What a logout ends. */
export interface LogoutOptions {
  /** Every session of the user, on every browser and device, not only this one. */
  everywhere?: boolean;
}

/**
 * Ends the session (clears the cookie), or with `everywhere` every session of the user. Throws
 * when the server did not say it ended: the session may still be valid, and the user must not
 * be told otherwise. A 401 means there was none: done, for this session; not done, for the
 * others, which it cannot end.
 */
export async function logout(timeoutMs = REQUEST_TIMEOUT_MS, { everywhere = false }: LogoutOptions = {}): Promise<void> {
  const url = everywhere ? "/api/v2/logout?everywhere=true" : "/api/v2/logout";
  await within(undefined, timeoutMs, async (signal) => {
    const response = await fetch(url, { method: "POST", credentials: "same-origin", signal });
    // From a session that has ended, the others cannot be ended: not done, whatever it says.
    if (everywhere && response.status === 401) {
      throw new HttpError(401, "this session has already ended: log in again to end the others");
    }
    if (!response.ok && response.status !== 401) throw await errorOf(response);
  });
}
