import { describe, expect, it } from "vitest";

import { HttpError, TimeoutError } from "./api.js";
import { isWorthRetrying, MAX_RETRY_AFTER_MS, retryDelay } from "./queries.js";

describe("retries of REST reads", () => {
  it("try a busy or rate-limited read again, after the wait its answer asked for", () => {
    const busy = new HttpError(503, "busy", 7_000);
    const limited = new HttpError(429, "slow down", 12_000);
    expect(isWorthRetrying(0, busy)).toBe(true);
    expect(isWorthRetrying(0, limited)).toBe(true);
    // TanStack's own delays would be 1 s and 2 s: the server said when it can answer.
    expect(retryDelay(0, busy)).toBe(7_000);
    expect(retryDelay(1, limited)).toBe(12_000);
    // A 429 without Retry-After is tried again too, backing off as any other failure.
    expect(isWorthRetrying(0, new HttpError(429, "slow down"))).toBe(true);
    expect([0, 1].map((n) => retryDelay(n, new HttpError(503, "busy")))).toEqual([1_000, 2_000]);
    // Never sooner than the backoff, even when the server says "now".
    expect(retryDelay(1, new HttpError(503, "busy", 0))).toBe(2_000);
  });

  it("are bounded: twice at most, and not at all when the wait asked for is longer than a page should sit loading", () => {
    expect(isWorthRetrying(2, new HttpError(503, "busy", 1_000))).toBe(false);
    expect(isWorthRetrying(0, new HttpError(503, "busy", MAX_RETRY_AFTER_MS))).toBe(true);
    expect(isWorthRetrying(0, new HttpError(429, "slow down", MAX_RETRY_AFTER_MS + 1))).toBe(false);
    // Other 4xx answers and timeouts are shown at once, as before.
    expect(isWorthRetrying(0, new HttpError(404, "no such device"))).toBe(false);
    expect(isWorthRetrying(0, new TimeoutError("No answer within 15 s."))).toBe(false);
    expect(isWorthRetrying(0, new Error("network"))).toBe(true);
  });
});
