/**
 * WebSocket tickets from the web service: `GET /api/v2/ws-ticket` with the session cookie.
 *
 * @packageDocumentation
 */

import type { Ticket } from "./types.js";

/** Where the web service hands out tickets. */
export const DEFAULT_TICKET_URL = "/api/v2/ws-ticket";

/** A ticket request that failed; `status` is the HTTP status when there was a response. */
export class TicketError extends Error {
  /** HTTP status of the response, when there was one (401: the session is gone). */
  readonly status: number | undefined;

  /** Creates the error. */
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TicketError";
    this.status = status;
  }
}

/**
 * Checks that `value` is a ticket: a non-empty `token`, a numeric `expires_at` and at least one
 * gateway URL.
 *
 * @throws TicketError naming the first problem.
 */
export function parseTicket(value: unknown): Ticket {
  if (typeof value !== "object" || value === null) throw new TicketError("a ticket must be an object");
  const v = value as Record<string, unknown>;
  if (typeof v.token !== "string" || v.token === "") throw new TicketError("ticket without a token");
  if (typeof v.expires_at !== "number" || !Number.isFinite(v.expires_at)) {
    throw new TicketError("ticket without a numeric expires_at");
  }
  const gateways = v.gateways;
  if (!Array.isArray(gateways) || gateways.length === 0) {
    throw new TicketError("ticket without gateways");
  }
  if (!gateways.every((g): g is string => typeof g === "string" && g !== "")) {
    throw new TicketError("ticket gateways must be non-empty strings");
  }
  const ticket: Ticket = { token: v.token, expires_at: v.expires_at, gateways: [...gateways] };
  if (v.expires_in !== undefined) {
    if (typeof v.expires_in !== "number" || !Number.isFinite(v.expires_in) || v.expires_in <= 0) {
      throw new TicketError("ticket with an expires_in that is not a positive number");
    }
    ticket.expires_in = v.expires_in;
  }
  return ticket;
}

/**
 * How long `ticket`'s token lives, in milliseconds, measured without comparing clocks:
 * `expires_in`, else the token's own `exp - iat` (both by the server's clock), else
 * `expires_at` against `now` (the only reading that trusts the local clock).
 */
export function ticketLifetimeMs(ticket: Ticket, now: number): number {
  if (ticket.expires_in !== undefined) return ticket.expires_in * 1000;
  const claims = tokenClaims(ticket.token);
  if (claims && typeof claims.exp === "number" && typeof claims.iat === "number" && claims.exp > claims.iat) {
    return (claims.exp - claims.iat) * 1000;
  }
  return ticket.expires_at * 1000 - now;
}

/** The payload of a JWT (its claims, not verified), or `undefined` when it is not one. */
export function tokenClaims(token: string): Record<string, unknown> | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = globalThis.atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    const json = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
    const claims: unknown = JSON.parse(json);
    return typeof claims === "object" && claims !== null ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Options of {@link ticketFetcher}. */
export interface TicketFetcherOptions {
  /** Default {@link DEFAULT_TICKET_URL}. */
  url?: string;
  /** Default the global `fetch`. */
  fetch?: typeof fetch;
}

/**
 * A `getTicket` for {@link PulseClient} that asks the web service with the session cookie.
 * Tickets are never cached: every call makes a request.
 */
export function ticketFetcher(options: TicketFetcherOptions = {}): (signal?: AbortSignal) => Promise<Ticket> {
  const url = options.url ?? DEFAULT_TICKET_URL;
  return async (signal?: AbortSignal) => {
    const doFetch = options.fetch ?? globalThis.fetch;
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "GET",
        ...(signal ? { signal } : {}),
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
    } catch (error) {
      throw new TicketError("ticket request failed", undefined, { cause: error });
    }
    if (!response.ok) {
      throw new TicketError(`ticket request answered HTTP ${response.status}`, response.status);
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error) {
      throw new TicketError("ticket response is not JSON", response.status, { cause: error });
    }
    return parseTicket(body);
  };
}

/** Picks one of `gateways` at random, avoiding `avoid` when there is another choice. */
export function pickGateway(gateways: readonly string[], random: () => number, avoid?: string): string {
  const choices = avoid !== undefined && gateways.some((g) => g !== avoid) ? gateways.filter((g) => g !== avoid) : gateways;
  const r = random();
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 0.999_999_999) : 0;
  const gateway = choices[Math.floor(unit * choices.length)];
  if (gateway === undefined) throw new TicketError("ticket without gateways");
  return gateway;
}
