import { afterEach, describe, expect, it, vi } from "vitest";

import { eitherSignal, fetchMe, getJson, HttpError, login, logout, onSessionLost, retryAfterMs, TimeoutError } from "./api.js";
import { isWorthRetrying } from "./queries.js";

/** A server that never answers: each request settles only when its signal aborts. */
function hungServer(): string[] {
  const asked: string[] = [];
  vi.stubGlobal("fetch", (url: string, init: RequestInit) => {
    asked.push(url);
    return new Promise((_, reject) => {
      const signal = init.signal;
      if (!signal) return; // hangs for ever: the test fails on its own timeout
      signal.addEventListener("abort", () => reject(signal.reason as Error), { once: true });
    });
  });
  return asked;
}

afterEach(() => {
  vi.unstubAllGlobals();
  onSessionLost(() => {});
});

describe("requests to the API", () => {
  it("give up a hung read, the session check, a login and a logout at their deadline", async () => {
    const asked = hungServer();
    await expect(getJson("/api/v2/events?topic=activity", undefined, 50)).rejects.toThrow("No answer within 0.05 s.");
    await expect(fetchMe(50)).rejects.toThrow("No answer within 0.05 s.");
    await expect(login("a@example.com", "pw", 50)).rejects.toThrow("No answer within 0.05 s.");
    await expect(logout(50)).rejects.toThrow("No answer within 0.05 s.");
    expect(asked).toEqual(["/api/v2/events?topic=activity", "/api/v2/me", "/api/v2/login", "/api/v2/logout"]);
  });

  it("give up with a TimeoutError, which the page shows at once rather than trying twice more", async () => {
    hungServer();
    const read = getJson("/api/v2/devices/d/telemetry", undefined, 50);
    await expect(read).rejects.toBeInstanceOf(TimeoutError);
    const error = await read.catch((e: unknown) => e);
    expect(isWorthRetrying(0, error)).toBe(false);
    expect(isWorthRetrying(0, new HttpError(503, "unavailable"))).toBe(true);
    expect(isWorthRetrying(2, new HttpError(503, "unavailable"))).toBe(false);
    expect(isWorthRetrying(0, new HttpError(404, "no such device"))).toBe(false);
  });

  it("end a read its caller aborts at once, as an abort rather than a timeout", async () => {
    hungServer();
    const caller = new AbortController();
    const read = getJson("/api/v2/fleet", caller.signal, 60_000);
    caller.abort();
    await expect(read).rejects.toMatchObject({ name: "AbortError" });
  });

  it("work in browsers without AbortSignal.any: the caller's abort and the deadline both end a read", async () => {
    vi.stubGlobal("AbortSignal", Object.assign(Object.create(AbortSignal) as typeof AbortSignal, { any: undefined, timeout: AbortSignal.timeout.bind(AbortSignal) }));
    expect(AbortSignal.any).toBeUndefined();
    hungServer();
    const caller = new AbortController();
    const read = getJson("/api/v2/fleet", caller.signal, 60_000);
    caller.abort();
    await expect(read).rejects.toMatchObject({ name: "AbortError" });
    await expect(getJson("/api/v2/fleet", new AbortController().signal, 50)).rejects.toBeInstanceOf(TimeoutError);
    // Already aborted: so is the result, with the same reason.
    const gone = new AbortController();
    gone.abort(new Error("gone"));
    expect(eitherSignal(gone.signal, new AbortController().signal).reason).toEqual(new Error("gone"));
  });

  it("answer within the deadline as before, and a 401 still ends the session", async () => {
    const lost = vi.fn();
    onSessionLost(lost);
    vi.stubGlobal("fetch", (url: string) =>
      Promise.resolve(url === "/api/v2/fleet" ? Response.json({ devices: [] }) : Response.json({ error: { message: "no session" } }, { status: 401 })),
    );
    await expect(getJson("/api/v2/fleet", undefined, 1_000)).resolves.toEqual({ devices: [] });
    await expect(getJson("/api/v2/alerts", undefined, 1_000)).rejects.toThrow("no session");
    expect(lost).toHaveBeenCalledTimes(1);
  });

  it("ask the server to end every session of the user when logging out everywhere", async () => {
    const asked: string[] = [];
    vi.stubGlobal("fetch", (url: string, init: RequestInit) => {
      asked.push(`${init.method ?? "GET"} ${url}`);
      return Promise.resolve(new Response(null, { status: 204 }));
    });
    await logout(1_000, { everywhere: true });
    await logout(1_000);
    expect(asked).toEqual(["POST /api/v2/logout?everywhere=true", "POST /api/v2/logout"]);
    // From a session that has ended, the others were not ended: that is no success.
    vi.stubGlobal("fetch", () => Promise.resolve(Response.json({ error: { message: "unauthorized" } }, { status: 401 })));
    await expect(logout(1_000, { everywhere: true })).rejects.toThrow("log in again to end the others");
    await expect(logout(1_000)).resolves.toBeUndefined();
  });

  it("fail a logout the server did not do, and take a 401 as no session to end", async () => {
    const answer = { status: 503 };
    vi.stubGlobal("fetch", () => Promise.resolve(Response.json({ error: { message: "database unavailable" } }, answer)));
    await expect(logout(1_000)).rejects.toThrow("database unavailable");
    answer.status = 401;
    await expect(logout(1_000)).resolves.toBeUndefined();
    answer.status = 204;
    vi.stubGlobal("fetch", () => Promise.resolve(new Response(null, answer)));
    await expect(logout(1_000)).resolves.toBeUndefined();
  });
});

describe("Retry-After", () => {
  it("is kept on the error of a read: in seconds, or as an HTTP date counted on the server's clock", async () => {
    const answers = [
      Response.json({ error: { code: "busy", message: "busy" } }, { status: 503, headers: { "Retry-After": "7" } }),
      // The date is the server's: 20 s after its `Date`, whatever this browser's clock says.
      Response.json(
        { error: { code: "rate_limited", message: "slow down" } },
        { status: 429, headers: { "Retry-After": "Sun, 22 Nov 2026 10:00:20 GMT", Date: "Sun, 22 Nov 2026 10:00:00 GMT" } },
      ),
      Response.json({ error: { message: "down" } }, { status: 502 }),
    ];
    vi.stubGlobal("fetch", () => Promise.resolve(answers.shift()));
    await expect(getJson("/api/v2/fleet")).rejects.toMatchObject({ status: 503, message: "busy", retryAfterMs: 7_000 });
    await expect(getJson("/api/v2/fleet")).rejects.toMatchObject({ status: 429, message: "slow down", retryAfterMs: 20_000 });
    const without = await getJson("/api/v2/fleet").catch((e: unknown) => e);
    expect(without).toBeInstanceOf(HttpError);
    expect((without as HttpError).retryAfterMs).toBeUndefined();
  });

  it("says how long a refused login waits, in seconds, whatever form the header took", async () => {
    const answers = [
      new Response(null, { status: 429, headers: { "Retry-After": "Sun, 22 Nov 2026 10:00:20 GMT", Date: "Sun, 22 Nov 2026 10:00:00 GMT" } }),
      new Response(null, { status: 429 }),
    ];
    vi.stubGlobal("fetch", () => Promise.resolve(answers.shift()));
    await expect(login("a@example.com", "pw")).rejects.toMatchObject({
      status: 429,
      message: "Too many failed attempts. Try again in 20 s.",
      retryAfterMs: 20_000,
    });
    await expect(login("a@example.com", "pw")).rejects.toMatchObject({ message: "Too many failed attempts. Try again later." });
  });

  it("reads seconds and dates, never a negative wait, and nothing from what is neither", () => {
    const now = Date.parse("2026-11-22T10:00:00Z");
    expect(retryAfterMs("0", null, now)).toBe(0);
    expect(retryAfterMs(" 120 ", null, now)).toBe(120_000);
    expect(retryAfterMs("Sun, 22 Nov 2026 10:01:00 GMT", null, now)).toBe(60_000);
    expect(retryAfterMs("Sun, 22 Nov 2026 09:59:00 GMT", null, now)).toBe(0);
    // The obsolete asctime form names no zone: it is GMT, whatever this browser's zone.
    expect(retryAfterMs("Sun Nov 22 10:00:30 2026", null, now)).toBe(30_000);
    for (const bad of [null, "", "soon", "-5", "1.5", "Sun, 99 Foo 2026"]) expect(retryAfterMs(bad, null, now)).toBeUndefined();
  });
});
