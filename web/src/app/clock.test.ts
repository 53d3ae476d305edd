import { afterEach, describe, expect, it, vi } from "vitest";

import { ago } from "../model/format.js";
import { getJson } from "./api.js";
import { noteServerDate, serverNow } from "./clock.js";

const T = Date.parse("2026-12-07T10:00:00.000Z");

afterEach(() => {
  // Clocks that agree: the offset goes back to 0.
  noteServerDate(new Date(T).toUTCString(), T - 500, T + 500);
  vi.unstubAllGlobals();
});

describe("serverNow", () => {
  it("counts on the server's clock when the browser's is off, from an answer's Date", () => {
    expect(serverNow(T)).toBe(T);
    // The browser is two minutes slow: the server said 10:02:00 while the browser read 10:00.
    noteServerDate(new Date(T + 120_000).toUTCString(), T - 100, T + 100);
    expect(Math.abs(serverNow(T) - (T + 120_000))).toBeLessThanOrEqual(1_000);
    // A device the server saw 10 s ago reads 10 s ago, not "just now".
    const seen = new Date(T + 120_000 - 10_000).toISOString();
    expect(ago(seen, serverNow(T))).toBe("10 s ago");
    // Fast by five minutes: an alert raised a moment ago is not "5 min ago".
    noteServerDate(new Date(T - 300_000).toUTCString(), T - 100, T + 100);
    expect(ago(new Date(T - 300_000 - 5_000).toISOString(), serverNow(T))).toBe("5 s ago");
  });

  it("takes clocks within a second and a half as agreeing, and ignores a missing or bad Date", () => {
    noteServerDate(new Date(T + 900).toUTCString(), T - 200, T + 200);
    expect(serverNow(T)).toBe(T);
    noteServerDate(new Date(T + 60_000).toUTCString(), T, T);
    const offset = serverNow(T) - T;
    noteServerDate(null, T, T);
    noteServerDate("yesterday", T, T);
    expect(serverNow(T) - T).toBe(offset);
  });

  it("is told by the API's answers", async () => {
    vi.stubGlobal("fetch", () =>
      Promise.resolve(new Response("{}", { status: 200, headers: { "Content-Type": "application/json", Date: new Date(Date.now() + 600_000).toUTCString() } })),
    );
    await getJson("/api/v2/fleet");
    expect(Math.abs(serverNow() - Date.now() - 600_000)).toBeLessThanOrEqual(1_500);
  });
});
