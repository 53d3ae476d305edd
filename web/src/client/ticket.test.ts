import { describe, expect, it, vi } from "vitest";

import { parseTicket, pickGateway, TicketError, ticketFetcher } from "./ticket.js";

const good = { token: "jwt", expires_at: 1795341660, gateways: ["ws://a/api/v2/ws", "ws://b/api/v2/ws"] };

function response(status: number, body: unknown): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

describe("parseTicket", () => {
  it("accepts a ticket and copies it", () => {
    const t = parseTicket({ ...good, extra: true });
    expect(t).toEqual(good);
    expect(t.gateways).not.toBe(good.gateways);
  });

  it("refuses anything else", () => {
    for (const bad of [
      null,
      "jwt",
      { ...good, token: "" },
      { ...good, token: 5 },
      { ...good, expires_at: "later" },
      { ...good, gateways: [] },
      { ...good, gateways: "ws://a" },
      { ...good, gateways: [""] },
    ]) {
      expect(() => parseTicket(bad)).toThrow(TicketError);
    }
  });
});

describe("ticketFetcher", () => {
  it("asks the web service with the session cookie and no caching", async () => {
    const fetch = vi.fn(async () => response(200, good));
    const ticket = await ticketFetcher({ fetch })();
    expect(ticket).toEqual(good);
    expect(fetch).toHaveBeenCalledWith(
      "/api/v2/ws-ticket",
      expect.objectContaining({ credentials: "same-origin", cache: "no-store" }),
    );
  });

  it("fetches anew on every call", async () => {
    const fetch = vi.fn(async () => response(200, good));
    const get = ticketFetcher({ fetch, url: "/t" });
    await get();
    await get();
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("reports the HTTP status of a refusal", async () => {
    const fetch = vi.fn(async () => response(401, { error: { code: "unauthorized", message: "log in" } }));
    await expect(ticketFetcher({ fetch })()).rejects.toMatchObject({ name: "TicketError", status: 401 });
  });

  it("fails on network errors and bad bodies", async () => {
    await expect(ticketFetcher({ fetch: vi.fn(async () => Promise.reject(new TypeError("offline"))) })()).rejects.toBeInstanceOf(
      TicketError,
    );
    await expect(ticketFetcher({ fetch: vi.fn(async () => response(200, "<html>")) })()).rejects.toBeInstanceOf(TicketError);
    await expect(ticketFetcher({ fetch: vi.fn(async () => response(200, { token: "x" })) })()).rejects.toBeInstanceOf(
      TicketError,
    );
  });
});

describe("pickGateway", () => {
  const gateways = ["a", "b", "c"];

  it("picks by the random source over the whole list", () => {
    expect(pickGateway(gateways, () => 0)).toBe("a");
    expect(pickGateway(gateways, () => 0.5)).toBe("b");
    expect(pickGateway(gateways, () => 0.99)).toBe("c");
    expect(pickGateway(gateways, () => 1)).toBe("c");
  });

  it("avoids a gateway when there is another choice", () => {
    for (const r of [0, 0.3, 0.6, 0.99]) expect(pickGateway(gateways, () => r, "b")).not.toBe("b");
    expect(pickGateway(["only"], () => 0.5, "only")).toBe("only");
  });

  it("fails on an empty list", () => {
    expect(() => pickGateway([], () => 0)).toThrow(TicketError);
  });
});
