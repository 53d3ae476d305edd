import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { PulseClient, type PulseClientOptions, type SocketConstructor } from "./connection.js";
import type { ClientError } from "./errors.js";
import type { EventsReset } from "./eventsReset.js";
import type { EventsPosition, PollContext } from "./fallback.js";
import type { ConnectionState, ConnectionStatus } from "./status.js";
import { FakeNetwork, FakeVisibility, nextSocketOf, settle, socketFactory, ticketSource, type FakeWebSocket } from "./testing/fakes.js";
import type {
  AlertsMessage,
  ClientRequest,
  DataMessage,
  EventMessage,
  FleetMessage,
  TelemetryMessage,
  Ticket,
} from "./types.js";

// The browser's WebSocket must satisfy the constructor type the client takes.
const _browserSocketFits: SocketConstructor | undefined = undefined as unknown as typeof WebSocket;
void _browserSocketFits;

const ts = "2026-11-22T10:00:00Z";

function alerts(seq: number, total_open = 1): AlertsMessage {
  return { type: "alerts", tenant_id: "acme", seq, ts, alerts: [], total_open };
}

function fleet(seq: number, online = 1): FleetMessage {
  return {
    type: "fleet",
    tenant_id: "acme",
    seq,
    ts,
    counts: { total: online, online, stale: 0, offline: 0 },
    devices: [],
  };
}

function telemetry(device_id: string, seq: number): TelemetryMessage {
  return { type: "telemetry", tenant_id: "acme", device_id, seq, data: { timestamp: ts, metrics: { temp_c: seq } } };
}

function event(topic: string, seq: number): EventMessage {
  return { type: "event", tenant_id: "acme", topic, event: "ticket:update", seq, ts, payload: { seq } };
}

/**
 * A ticket source whose `hangingCall`-th request never answers; `signals` holds the abort signal
 * each request was given.
 */
function hangingTicketSource(hangingCall: number) {
  const good = ticketSource();
  const signals: (AbortSignal | undefined)[] = [];
  const getTicket = vi.fn((signal?: AbortSignal) => {
    signals.push(signal);
    return signals.length === hangingCall ? new Promise<Ticket>(() => {}) : good();
  });
  return { getTicket, signals };
}

/**
 * A client on `getTicket`, connected, at its first renewal (45 s into a 60 s ticket: the second
 * ticket asked for), its socket answering.
 */
async function atFirstRenewal(getTicket: PulseClientOptions["getTicket"]) {
  const t = setup({ getTicket });
  const socket = await t.connect();
  await t.advanceAndSettle(45_000);
  expect(getTicket).toHaveBeenCalledTimes(2);
  socket.push({ type: "pong" });
  return { t, socket };
}

/**
 * Runs the fake timers `ms` in steps of 20 ms, checking that what the client sends on `socket`
 * stays within the gateway's defaults: bursts of 100 messages, refilled at 50 a second, every
 * frame counting (those sent so far included).
 */
async function expectWithinTheGatewaysRate(socket: FakeWebSocket, ms: number): Promise<void> {
  let allowance = 100 - socket.sent.length;
  let counted = socket.sent.length;
  for (let elapsed = 0; elapsed < ms; elapsed += 20) {
    await vi.advanceTimersByTimeAsync(20);
    allowance = Math.min(100, allowance + 1) - (socket.sent.length - counted);
    counted = socket.sent.length;
    expect(allowance).toBeGreaterThanOrEqual(0);
  }
}

/** The `auth` requests sent on `socket`. */
function authRequests(socket: FakeWebSocket): Extract<ClientRequest, { action: "auth" }>[] {
  return socket.requests.filter((r) => r.action === "auth");
}

/**
 * After one failed renewal of `socket`'s token: the failure is reported once, the renewal is tried
 * again once the socket answers a ping, and the renewed token goes out once on the same socket.
 */
async function expectRenewalRetried(
  t: ReturnType<typeof setup>,
  socket: FakeWebSocket,
  getTicket: () => unknown,
): Promise<void> {
  expect(t.errors.map((e) => e.kind)).toEqual(["renew_failed"]);
  socket.push({ type: "pong" });
  await t.advanceAndSettle(5_000);
  expect(getTicket).toHaveBeenCalledTimes(3);
  expect(authRequests(socket)).toHaveLength(1);
}

/**
 * Connects, then lets the gateway answer no ping (after `meanwhile`, if given): the socket is
 * live until 45 s of silence have passed, then closed and replaced.
 */
async function heartbeatGivesUpAfter45s(t: ReturnType<typeof setup>, meanwhile: () => void = () => {}) {
  const socket = await t.connect();
  socket.autoPong = false;
  meanwhile();
  await vi.advanceTimersByTimeAsync(44_999);
  expect(t.client.state).toBe("live");
  await vi.advanceTimersByTimeAsync(1);
  await t.expectReplaced(socket, "heartbeat_timeout");
}

function setup(overrides: Partial<PulseClientOptions> = {}) {
  const factory = socketFactory();
  const getTicket = ticketSource();
  const network = new FakeNetwork();
  const onHandlerError = vi.fn();
  const client = new PulseClient({
    getTicket,
    WebSocket: factory.WebSocket,
    network,
    random: () => 0.5,
    onHandlerError,
    ...overrides,
  });
  const errors: ClientError[] = [];
  const statuses: ConnectionStatus[] = [];
  client.on("error", (e) => errors.push(e));
  client.on("connection", (s) => statuses.push(s));
  // The states in turn: a status published again with the same state (a new next attempt
  // time) is the same step.
  const states = (): ConnectionState[] =>
    statuses.map((s) => s.state).filter((state, i, all) => i === 0 || all[i - 1] !== state);
  /** Milliseconds until the next connection attempt; NaN when none is scheduled. */
  const nextAttemptIn = (): number => (client.status.nextAttemptAt ?? Number.NaN) - Date.now();

  /** Lets `ms` of fake time pass, then lets the promises it started settle. */
  async function advanceAndSettle(ms: number): Promise<void> {
    await vi.advanceTimersByTimeAsync(ms);
    await settle();
  }

  /** Starts the client and lets the first socket open, and the gateway answer its ping. */
  async function connect(): Promise<FakeWebSocket> {
    client.start();
    await settle();
    const socket = factory.last();
    socket.accept();
    await settle();
    return socket;
  }

  /** Waits until the next socket exists (running timers as needed), then opens it. */
  async function nextSocket(open = true, maxMs = 60_000): Promise<FakeWebSocket> {
    const socket = await nextSocketOf(factory, maxMs);
    if (open) {
      socket.accept();
      await settle();
    }
    return socket;
  }

  /** Starts the client and drops its first `n` attempts before they open, so the backoff grows. */
  async function failAttempts(n: number): Promise<void> {
    client.start();
    await settle();
    for (let i = 0; i < n; i += 1) {
      factory.last().serverClose(1006);
      await nextSocket(false);
    }
  }

  /** Expects the client to have closed `socket` over `kind`, its one error, and to go live again. */
  async function expectReplaced(socket: FakeWebSocket, kind: ClientError["kind"]): Promise<void> {
    expect(socket.closedByClient).toBeDefined();
    expect(socket.attached).toBe(false);
    expect(client.state).toBe("reconnecting");
    expect(errors.map((e) => e.kind)).toEqual([kind]);
    await nextSocket();
    expect(client.state).toBe("live");
  }

  /** Subscribes to `type` and returns a spy that receives its messages. */
  function spyOnSubscription(type: "alerts" | "fleet") {
    client.subscribe({ type });
    const got = vi.fn();
    client.on(type, got);
    return got;
  }

  return {
    client,
    factory,
    getTicket,
    network,
    onHandlerError,
    errors,
    statuses,
    states,
    nextAttemptIn,
    advanceAndSettle,
    connect,
    nextSocket,
    failAttempts,
    expectReplaced,
    spyOnSubscription,
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date("2026-11-22T10:00:00Z"));
});

afterEach(() => {
  vi.useRealTimers();
});

describe("connecting", () => {
  it("goes connecting → live → reconnecting → live", async () => {
    const t = setup();
    expect(t.client.state).toBe("offline");
    t.client.start();
    expect(t.client.state).toBe("connecting");
    await settle();
    expect(t.client.state).toBe("connecting");
    t.factory.last().accept();
    // Open, but live only once the gateway answered (its pong to the opening ping).
    expect(t.client.state).toBe("connecting");
    await settle();
    expect(t.client.state).toBe("live");
    t.factory.last().serverClose(1006);
    expect(t.client.state).toBe("reconnecting");
    await t.nextSocket();
    expect(t.client.state).toBe("live");
    expect(t.states()).toEqual(["connecting", "live", "reconnecting", "live"]);
  });

  it("connects to a gateway from the ticket with the token in a subprotocol, not the URL", async () => {
    const getTicket = vi.fn(
      async (): Promise<Ticket> => ({ token: "h.p-_.s", expires_at: Date.now() / 1000 + 60, gateways: ["ws://gw-a/api/v2/ws", "ws://gw-b/api/v2/ws"] }),
    );
    const t = setup({ getTicket, random: () => 0.7 });
    await t.connect();
    expect(t.factory.last().url).toBe("ws://gw-b/api/v2/ws");
    expect(t.factory.last().protocols).toEqual(["pulse.v1", "pulse.ticket.h.p-_.s"]);
  });

  it("keeps the token out of the URL after a failed attempt once the subprotocol has worked", async () => {
    const t = setup();
    const first = await t.connect();
    expect(first.url).not.toContain("token=");
    first.serverClose(1006);
    // A gateway restarting: the next attempt is refused before it opens.
    const refused = await t.nextSocket(false);
    refused.serverClose(1006);
    const next = await t.nextSocket(false);
    expect(next.url).not.toContain("token=");
    expect(next.protocols?.[0]).toBe("pulse.v1");
  });

  it("puts a token that cannot be a subprotocol in the query", async () => {
    const getTicket = vi.fn(
      async (): Promise<Ticket> => ({ token: "a.b+c/d", expires_at: Date.now() / 1000 + 60, gateways: ["ws://gw-b/api/v2/ws"] }),
    );
    const t = setup({ getTicket });
    await t.connect();
    expect(t.factory.last().url).toBe("ws://gw-b/api/v2/ws?token=a.b%2Bc%2Fd");
    expect(t.factory.last().protocols).toBeUndefined();
  });

  it("fetches a fresh ticket before every connection attempt", async () => {
    const t = setup();
    await t.connect();
    expect(t.getTicket).toHaveBeenCalledTimes(1);
    expect(t.factory.last().token).toBe("t1");
    t.factory.last().serverClose(1006);
    const second = await t.nextSocket();
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    expect(second.token).toBe("t2");
    second.serverClose(4029);
    const third = await t.nextSocket(false);
    expect(t.getTicket).toHaveBeenCalledTimes(3);
    expect(third.token).toBe("t3");
  });

  it("start() twice makes one connection", async () => {
    const t = setup();
    t.client.start();
    t.client.start();
    await settle();
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.getTicket).toHaveBeenCalledTimes(1);
  });

  it("retries when the socket does not open in time", async () => {
    const t = setup({ connectTimeoutMs: 10_000 });
    t.client.start();
    await settle();
    const stuck = t.factory.last();
    await vi.advanceTimersByTimeAsync(10_000);
    await t.expectReplaced(stuck, "connect_timeout");
  });

  it("gives the ticket and the socket one deadline between them", async () => {
    // The ticket takes 6 s of the 10 s; the socket then has the 4 s left, not 10 s of its own.
    const good = ticketSource();
    const getTicket = vi.fn(() => new Promise<Ticket>((resolve) => setTimeout(() => resolve(good()), 6_000)));
    const t = setup({ getTicket, connectTimeoutMs: 10_000 });
    t.client.start();
    await t.advanceAndSettle(6_000);
    const stuck = t.factory.last();
    await t.advanceAndSettle(3_999);
    expect(t.errors).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await t.expectReplaced(stuck, "connect_timeout");
  });

  it("retries when the ticket cannot be fetched or is unusable", async () => {
    const good = ticketSource();
    let calls = 0;
    const getTicket = vi.fn(async (): Promise<Ticket> => {
      calls += 1;
      if (calls === 1) throw new Error("HTTP 503");
      if (calls === 2) return { token: "", expires_at: 0, gateways: [] };
      return good();
    });
    const t = setup({ getTicket });
    t.client.start();
    await settle();
    expect(t.factory.sockets).toHaveLength(0);
    expect(t.client.state).toBe("reconnecting");
    await t.nextSocket();
    expect(getTicket).toHaveBeenCalledTimes(3);
    expect(t.errors.map((e) => e.kind)).toEqual(["ticket_failed", "ticket_failed"]);
    expect(t.client.state).toBe("live");
  });

  it("retries when the WebSocket cannot be created", async () => {
    const factory = socketFactory();
    let n = 0;
    const Flaky = class extends factory.WebSocket {
      constructor(url: string) {
        n += 1;
        if (n === 1) throw new SyntaxError("bad url");
        super(url);
      }
    };
    const t = setup({ WebSocket: Flaky });
    t.client.start();
    await settle();
    expect(t.errors.map((e) => e.kind)).toEqual(["connect_failed"]);
    await t.advanceAndSettle(1_000);
    factory.last().accept();
    await settle();
    expect(t.client.state).toBe("live");
  });
});

describe("reconnecting", () => {
  it("never gives up: 50 failures in a row still schedule another attempt", async () => {
    const t = setup({ random: () => 0.999 });
    t.client.start();
    await settle();
    for (let i = 0; i < 50; i += 1) {
      t.factory.last().serverClose(1006);
      expect(t.client.state).toBe("reconnecting");
      const delay = t.nextAttemptIn();
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(30_000);
      await t.nextSocket(false);
    }
    expect(t.factory.sockets).toHaveLength(51);
    expect(t.getTicket).toHaveBeenCalledTimes(51);
    t.factory.last().accept();
    await settle();
    expect(t.client.state).toBe("live");
  });

  it("widens the backoff on each failure up to the 30 s cap", async () => {
    const t = setup({ random: () => 0.999 });
    t.client.start();
    await settle();
    const delays: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      t.factory.last().serverClose(1006);
      delays.push(t.nextAttemptIn());
      await t.nextSocket(false);
    }
    expect(delays).toEqual([999, 1_998, 3_996, 7_992, 15_984, 29_970, 29_970, 29_970]);
  });

  it("keeps backing off when connections open and drop at once (1006 after the upgrade)", async () => {
    const t = setup({ random: () => 0.999 });
    await t.connect();
    const delays: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      t.factory.last().serverClose(1011);
      delays.push(t.nextAttemptIn());
      await t.nextSocket(true);
    }
    expect(delays).toEqual([999, 1_998, 3_996, 7_992]);
  });

  it("after 4029 spreads the clients refused together beyond the hint, not all at its end", async () => {
    const waits: number[] = [];
    for (const r of [0.1, 0.9]) {
      const t = setup({ random: () => r });
      const socket = await t.connect();
      socket.serverClose(4029, "tenant connection limit reached; retry_after=5");
      waits.push(t.nextAttemptIn());
      t.client.close();
    }
    expect(waits).toEqual([5_100, 5_900]);
  });

  it("publishes each new next attempt time while reconnecting, not only the first", async () => {
    const t = setup({ random: () => 0.999 });
    await t.failAttempts(3);
    t.factory.last().serverClose(1006);
    const last = t.statuses.at(-1);
    expect(last?.state).toBe("reconnecting");
    expect(last?.nextAttemptAt).toBe(t.client.status.nextAttemptAt);
    expect(new Set(t.statuses.map((s) => s.nextAttemptAt)).size).toBeGreaterThan(3);
  });

  it("after 4029 waits at least the gateway's hint, backs off beyond it, and tries another gateway", async () => {
    const t = setup({ random: () => 0.999 });
    const first = await t.connect();
    const delays: number[] = [];
    first.serverClose(4029, "too many connections from this address; retry_after=12");
    delays.push(t.nextAttemptIn());
    const second = await t.nextSocket(true);
    expect(second.url).not.toBe(first.url);
    for (let i = 0; i < 3; i += 1) {
      t.factory.last().serverClose(4029, "rate limit exceeded");
      delays.push(t.nextAttemptIn());
      await t.nextSocket(true);
    }
    // The hint (12 s, then the default 5 s), with the backoff's jitter on top.
    expect(delays).toEqual([12_999, 6_998, 8_996, 12_992]);
    expect(t.errors.map((e) => e.kind)).toEqual(["rate_limited", "rate_limited", "rate_limited", "rate_limited"]);
  });

  it("backs off gateways that answer 1012 as soon as a connection opens", async () => {
    const t = setup({ random: () => 0.999 });
    await t.connect();
    const delays: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      t.factory.last().serverClose(1012, "service restart");
      delays.push(t.nextAttemptIn());
      await t.nextSocket(true);
    }
    // The first comes back at once (within the 1 s jitter); the next, each closed as soon as
    // it opened, wait out a growing backoff.
    expect(delays).toEqual([999, 999, 1_998, 3_996]);
  });

  it("reports 1002, 1003, 1007 and 1009 as this client's fault and waits the longest backoff, spread", async () => {
    for (const code of [1002, 1003, 1007, 1009]) {
      const waits = [];
      for (const random of [0, 0.5, 0.999]) {
        const t = setup({ random: () => random });
        await t.connect();
        t.factory.last().serverClose(code, "message too big");
        expect(t.errors.map((e) => [e.kind, e.code])).toEqual([["protocol_violation", code]]);
        waits.push(t.nextAttemptIn());
        t.client.close();
      }
      // 30 s, and up to half of it again: clients refused together do not return together.
      expect(waits).toEqual([30_000, 37_500, 44_985]);
    }
  });

  it("starts the backoff over after a connection stayed up", async () => {
    const t = setup({ random: () => 0.999 });
    await t.connect();
    t.factory.last().serverClose(1006);
    await t.nextSocket(true);
    t.factory.last().serverClose(1006);
    expect(t.nextAttemptIn()).toBe(1_998);
    await t.nextSocket(true);
    await vi.advanceTimersByTimeAsync(10_000);
    t.factory.last().push({ type: "pong" });
    t.factory.last().serverClose(1006);
    expect(t.nextAttemptIn()).toBe(999);
  });

  it("starts the backoff over when a long-lived socket goes silent", async () => {
    const t = setup({ random: () => 0.999 });
    await t.failAttempts(4);
    const socket = t.factory.last();
    socket.accept();
    await vi.advanceTimersByTimeAsync(60_000); // pongs keep it alive
    socket.autoPong = false;
    await vi.advanceTimersByTimeAsync(45_000);
    expect(t.client.state).toBe("reconnecting");
    expect(t.nextAttemptIn()).toBe(999);
  });

  it("stops retrying when a connection handler closes the client", async () => {
    const t = setup();
    await t.connect();
    t.client.on("connection", (s) => {
      if (s.state === "reconnecting") t.client.close();
    });
    t.factory.last().serverClose(1006);
    expect(t.client.state).toBe("offline");
    await t.advanceAndSettle(10 * 60_000);
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.getTicket).toHaveBeenCalledTimes(1);
  });

  it("reconnects within 0–1 s after 1012, however long the backoff had grown", async () => {
    const t = setup({ random: () => 0.999 });
    await t.failAttempts(6);
    t.factory.last().accept();
    const draining = t.factory.last();
    draining.serverClose(1012, "draining");
    expect(t.client.state).toBe("reconnecting");
    const tickets = t.getTicket.mock.calls.length;
    await vi.advanceTimersByTimeAsync(998);
    expect(t.getTicket).toHaveBeenCalledTimes(tickets);
    await t.advanceAndSettle(1);
    expect(t.getTicket).toHaveBeenCalledTimes(tickets + 1);
    const next = t.factory.last();
    expect(next).not.toBe(draining);
    // A draining gateway is avoided when the ticket lists another.
    expect(new URL(next.url).host).not.toBe(new URL(draining.url).host);
  });

  it("tries another gateway after one could not be reached", async () => {
    const t = setup({ random: () => 0 }); // would always pick the first gateway
    t.client.start();
    await settle();
    const unreachable = t.factory.last();
    unreachable.serverClose(1006); // closed before it ever opened
    const next = await t.nextSocket(false);
    expect(new URL(next.url).host).not.toBe(new URL(unreachable.url).host);
    // The preference lasts one attempt: a gateway that failed may be back later.
    next.serverClose(1006);
    const third = await t.nextSocket(false);
    expect(new URL(third.url).host).toBe(new URL(unreachable.url).host);
  });

  it("falls back to the ticket in the URL for a gateway that refuses the subprotocol, and keeps to what worked", async () => {
    const t = setup();
    t.client.start();
    await settle();
    const offered = t.factory.last();
    expect(offered.protocols).toEqual(["pulse.v1", `pulse.ticket.${offered.token}`]);
    offered.serverClose(1006); // an older gateway selects no subprotocol: the handshake fails
    const inUrl = await t.nextSocket();
    expect(inUrl.protocols).toBeUndefined();
    expect(new URL(inUrl.url).searchParams.get("token")).toBe(inUrl.token);
    expect(t.client.state).toBe("live");
    // The first failure may have been a gateway that was down: the subprotocol gets one more
    // chance, so that tokens do not stay in URLs for the life of the tab.
    inUrl.serverClose(1012);
    const retried = await t.nextSocket(false);
    expect(retried.protocols?.[0]).toBe("pulse.v1");
    expect(new URL(retried.url).searchParams.has("token")).toBe(false);
    retried.serverClose(1006); // refused again: this gateway does not take it
    const inUrlAgain = await t.nextSocket();
    expect(inUrlAgain.protocols).toBeUndefined();
    // From then on, later connections keep the way that worked.
    inUrlAgain.serverClose(1012);
    const again = await t.nextSocket();
    expect(again.protocols).toBeUndefined();
    expect(new URL(again.url).searchParams.has("token")).toBe(true);
  });

  it("after a gateway that was down made it put the ticket in the URL, goes back to the subprotocol", async () => {
    const t = setup();
    t.client.start();
    await settle();
    t.factory.last().serverClose(1006); // the gateway is down (an outage, a deploy)
    const inUrl = await t.nextSocket();
    expect(inUrl.protocols).toBeUndefined();
    inUrl.serverClose(1012);
    const next = await t.nextSocket();
    expect(next.protocols?.[0]).toBe("pulse.v1");
    expect(next.url).not.toContain("token=");
    expect(t.client.state).toBe("live");
    // It works: it stays that way, whatever fails later.
    next.serverClose(1006);
    const later = await t.nextSocket();
    expect(later.url).not.toContain("token=");
  });

  it("tries another gateway after one did not answer in time", async () => {
    const t = setup({ random: () => 0, connectTimeoutMs: 1_000 });
    t.client.start();
    await settle();
    const silent = t.factory.last();
    await vi.advanceTimersByTimeAsync(1_000);
    const next = await t.nextSocket(false);
    expect(new URL(next.url).host).not.toBe(new URL(silent.url).host);
  });

  it("keeps picking at random after a connection that had opened drops", async () => {
    const t = setup({ random: () => 0 });
    const first = await t.connect();
    first.serverClose(1006);
    const next = await t.nextSocket(false);
    expect(new URL(next.url).host).toBe(new URL(first.url).host);
  });

  it("spreads 1012 reconnects over the jitter window", async () => {
    for (const [r, want] of [
      [0, 0],
      [0.25, 250],
      [0.5, 500],
    ] as const) {
      const t = setup({ random: () => r });
      await t.connect();
      t.factory.last().serverClose(1012);
      expect(t.nextAttemptIn()).toBe(want);
      t.client.close();
    }
  });

  it("fetches a new ticket after 4001 and connects with it", async () => {
    const t = setup();
    const first = await t.connect();
    expect(first.token).toBe("t1");
    first.serverClose(4001, "token expired");
    expect(t.client.state).toBe("reconnecting");
    const second = await t.nextSocket();
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    expect(second.token).toBe("t2");
    expect(t.client.state).toBe("live");
  });

  it("reconnects with backoff after 4008, 1000 and 1001", async () => {
    for (const code of [4008, 1000, 1001]) {
      const t = setup({ random: () => 0.5 });
      await t.connect();
      t.factory.last().serverClose(code);
      expect(t.client.state).toBe("reconnecting");
      expect(t.client.status.closeCode).toBe(code);
      expect(t.nextAttemptIn()).toBe(500);
      await t.nextSocket();
      expect(t.client.state).toBe("live");
      t.client.close();
    }
  });

  it("goes offline on 4003 and never retries", async () => {
    const t = setup({ poll: vi.fn() });
    await t.connect();
    t.factory.last().serverClose(4003, "role may not connect");
    expect(t.client.state).toBe("offline");
    expect(t.client.status.reason).toBe("forbidden");
    expect(t.client.status.error?.kind).toBe("forbidden");
    expect(t.errors.map((e) => e.kind)).toEqual(["forbidden"]);
    await t.advanceAndSettle(10 * 60_000);
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.getTicket).toHaveBeenCalledTimes(1);
    expect(t.client.polling).toBe(false);
    expect(t.network.listenerCount).toBe(0);
    expect(t.states()).toEqual(["connecting", "live", "offline"]);
  });

  it("can be started again after 4003", async () => {
    const t = setup();
    await t.connect();
    t.factory.last().serverClose(4003);
    t.client.start();
    await settle();
    t.factory.last().accept();
    await settle();
    expect(t.client.state).toBe("live");
    expect(t.factory.sockets).toHaveLength(2);
  });

  it("ignores events from a socket it already left", async () => {
    const t = setup();
    const first = await t.connect();
    first.serverClose(1006);
    const second = await t.nextSocket();
    const seen = vi.fn();
    t.client.subscribe({ type: "alerts" });
    t.client.on("alerts", seen);
    first.push(alerts(5));
    first.serverClose(4003);
    expect(seen).not.toHaveBeenCalled();
    expect(t.client.state).toBe("live");
    second.push(alerts(5));
    expect(seen).toHaveBeenCalledTimes(1);
  });
});

describe("subscriptions", () => {
  it("sends subscribe once for two holders and unsubscribe only when both released", async () => {
    const t = setup();
    const socket = await t.connect();
    const a = t.client.subscribe({ type: "alerts" });
    const b = t.client.subscribe({ type: "alerts" });
    expect(socket.channelRequests).toEqual([{ action: "subscribe", type: "alerts" }]);
    a();
    expect(socket.channelRequests).toEqual([{ action: "subscribe", type: "alerts" }]);
    a(); // releasing twice counts once
    expect(socket.channelRequests).toHaveLength(1);
    b();
    expect(socket.channelRequests).toEqual([
      { action: "subscribe", type: "alerts" },
      { action: "unsubscribe", type: "alerts" },
    ]);
    expect(t.client.channels).toEqual([]);
  });

  it("counts holders per channel, devices and topics each on their own", async () => {
    const t = setup();
    const socket = await t.connect();
    const d1 = t.client.subscribe({ type: "device", device_id: "dev-1" });
    const d1b = t.client.subscribe({ type: "device", device_id: "dev-1" });
    const d2 = t.client.subscribe({ type: "device", device_id: "dev-2" });
    t.client.subscribe({ type: "events", topic: "tickets" });
    d1();
    d2();
    expect(socket.channelRequests).toEqual([
      { action: "subscribe", type: "device", device_id: "dev-1" },
      { action: "subscribe", type: "device", device_id: "dev-2" },
      { action: "subscribe", type: "events", topic: "tickets" },
      { action: "unsubscribe", type: "device", device_id: "dev-2" },
    ]);
    d1b();
    expect(socket.requests.at(-1)).toEqual({ action: "unsubscribe", type: "device", device_id: "dev-1" });
  });

  it("sends subscriptions made before the socket opened once it opens", async () => {
    const t = setup();
    t.client.subscribe({ type: "fleet" });
    t.client.subscribe({ type: "fleet" });
    const released = t.client.subscribe({ type: "alerts" });
    released();
    const socket = await t.connect();
    expect(socket.channelRequests).toEqual([{ action: "subscribe", type: "fleet" }]);
  });

  it("restores every held channel after a reconnect, once each", async () => {
    const t = setup();
    const first = await t.connect();
    t.client.subscribe({ type: "alerts" });
    t.client.subscribe({ type: "alerts" });
    t.client.subscribe({ type: "fleet" });
    t.client.subscribe({ type: "device", device_id: "dev-0001" });
    t.client.subscribe({ type: "events", topic: "tickets" });
    const gone = t.client.subscribe({ type: "device", device_id: "dev-0002" });
    gone();
    expect(first.channelRequests).toHaveLength(6);
    first.serverClose(1006);
    // Released while disconnected: must not come back.
    const second = await t.nextSocket();
    expect(second.channelRequests).toEqual([
      { action: "subscribe", type: "alerts" },
      { action: "subscribe", type: "fleet" },
      { action: "subscribe", type: "device", device_id: "dev-0001" },
      { action: "subscribe", type: "events", topic: "tickets" },
    ]);
    second.serverClose(1012);
    const third = await t.nextSocket();
    expect(third.channelRequests).toHaveLength(4);
  });

  it("releases while disconnected without sending anything, and does not restore them", async () => {
    const t = setup();
    const first = await t.connect();
    const release = t.client.subscribe({ type: "fleet" });
    first.serverClose(1006);
    release();
    const second = await t.nextSocket();
    expect(second.channelRequests).toEqual([]);
  });

  it("refuses channels with invalid ids without sending anything", async () => {
    const t = setup();
    const socket = await t.connect();
    expect(() => t.client.subscribe({ type: "device", device_id: "a.>" })).toThrow(TypeError);
    expect(() => t.client.subscribe({ type: "events", topic: "" })).toThrow(TypeError);
    expect(socket.channelRequests).toEqual([]);
  });
});

describe("data", () => {
  it("publishes data on its topic", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "alerts" });
    t.client.subscribe({ type: "device", device_id: "dev-1" });
    t.client.subscribe({ type: "events", topic: "tickets" });
    const got: string[] = [];
    t.client.on("alerts", (m) => got.push(`alerts:${m.seq}`));
    t.client.on("telemetry:dev-1", (m) => got.push(`dev-1:${m.seq}`));
    t.client.on("events:tickets", (m) => got.push(`tickets:${m.seq}`));
    socket.push(alerts(1));
    socket.push(telemetry("dev-1", 2));
    socket.push(event("tickets", 3));
    expect(got).toEqual(["alerts:1", "dev-1:2", "tickets:3"]);
  });

  it("drops older and duplicate snapshots per topic, independently", async () => {
    const t = setup();
    const socket = await t.connect();
    for (const channel of [
      { type: "alerts" },
      { type: "fleet" },
      { type: "device", device_id: "dev-1" },
      { type: "device", device_id: "dev-2" },
    ] as const) {
      t.client.subscribe(channel);
    }
    const got: string[] = [];
    t.client.on("alerts", (m) => got.push(`alerts:${m.seq}`));
    t.client.on("fleet", (m) => got.push(`fleet:${m.seq}`));
    t.client.on("telemetry:dev-1", (m) => got.push(`dev-1:${m.seq}`));
    t.client.on("telemetry:dev-2", (m) => got.push(`dev-2:${m.seq}`));
    socket.push(alerts(100));
    socket.push(alerts(99)); // older
    socket.push(alerts(100)); // duplicate
    socket.push(fleet(5)); // lower than alerts' seq, but another topic
    socket.push(telemetry("dev-1", 50));
    socket.push(telemetry("dev-2", 10)); // lower than dev-1's, another topic
    socket.push(telemetry("dev-1", 50));
    socket.push(alerts(101));
    socket.push(fleet(4));
    expect(got).toEqual(["alerts:100", "fleet:5", "dev-1:50", "dev-2:10", "alerts:101"]);
  });

  it("delivers each event once and in order, per topic", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "events", topic: "tickets" });
    t.client.subscribe({ type: "events", topic: "orders" });
    const got: string[] = [];
    t.client.on("events:tickets", (m) => got.push(`tickets:${m.seq}`));
    t.client.on("events:orders", (m) => got.push(`orders:${m.seq}`));
    socket.push(event("tickets", 10));
    socket.push(event("tickets", 11));
    socket.push(event("tickets", 11)); // duplicate
    socket.push(event("tickets", 9)); // older: already behind the position
    socket.push(event("orders", 3)); // another topic, its own position
    socket.push(event("tickets", 12));
    expect(got).toEqual(["tickets:10", "tickets:11", "orders:3", "tickets:12"]);
  });

  it("drops the snapshot the gateway sends again after a reconnect", async () => {
    const t = setup();
    const first = await t.connect();
    const got = t.spyOnSubscription("alerts");
    first.push(alerts(7));
    first.serverClose(1006);
    const second = await t.nextSocket();
    second.push(alerts(7));
    expect(got).toHaveBeenCalledTimes(1);
    second.push(alerts(8));
    expect(got).toHaveBeenCalledTimes(2);
  });

  it("ignores data for channels it does not hold", async () => {
    const t = setup();
    const socket = await t.connect();
    const release = t.client.subscribe({ type: "fleet" });
    const got = vi.fn();
    t.client.on("fleet", got);
    t.client.on("alerts", got);
    socket.push(alerts(1)); // never subscribed
    socket.push(fleet(1));
    release();
    socket.push(fleet(2)); // in flight after the release
    expect(got).toHaveBeenCalledTimes(1);
    expect(t.errors).toEqual([]);
  });

  it("accepts the current snapshot again after a channel was released and held anew", async () => {
    const t = setup();
    const socket = await t.connect();
    const got = vi.fn();
    t.client.on("fleet", got);
    const release = t.client.subscribe({ type: "fleet" });
    socket.push(fleet(9));
    release();
    t.client.subscribe({ type: "fleet" });
    socket.push(fleet(9)); // the gateway sends the current value after `subscribed`
    expect(got).toHaveBeenCalledTimes(2);
  });

  it("watch() hands a later holder the newest snapshot at once", async () => {
    const t = setup();
    const socket = await t.connect();
    const first = vi.fn();
    const second = vi.fn();
    const stopFirst = t.client.watch({ type: "alerts" }, first);
    socket.push(alerts(3));
    const stopSecond = t.client.watch({ type: "alerts" }, second);
    expect(second).toHaveBeenCalledWith(alerts(3));
    expect(t.client.latest("alerts")).toEqual(alerts(3));
    expect(socket.channelRequests).toEqual([{ action: "subscribe", type: "alerts" }]);
    stopFirst();
    socket.push(alerts(4));
    expect(first).toHaveBeenCalledTimes(1);
    expect(second).toHaveBeenCalledTimes(2);
    stopSecond();
    expect(socket.requests.at(-1)).toEqual({ action: "unsubscribe", type: "alerts" });
    expect(t.client.latest("alerts")).toBeUndefined();
  });

  it("isolates a throwing handler: other widgets still get the message", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "alerts" });
    const before = vi.fn();
    const after = vi.fn();
    t.client.on("alerts", before);
    t.client.on("alerts", () => {
      throw new Error("widget bug");
    });
    t.client.on("alerts", after);
    socket.push(alerts(1));
    socket.push(alerts(2));
    expect(before).toHaveBeenCalledTimes(2);
    expect(after).toHaveBeenCalledTimes(2);
    expect(t.onHandlerError).toHaveBeenCalledTimes(2);
    expect(t.onHandlerError.mock.calls[0]?.[1]).toBe("alerts");
    expect(t.client.state).toBe("live");
  });

  it("isolates a throwing connection handler", async () => {
    const t = setup();
    t.client.on("connection", () => {
      throw new Error("status widget bug");
    });
    await t.connect();
    expect(t.client.state).toBe("live");
    expect(t.states()).toEqual(["connecting", "live"]);
    expect(t.onHandlerError).toHaveBeenCalledTimes(2);
  });
});

describe("bad frames", () => {
  it("reports malformed and unknown frames and keeps working", async () => {
    const t = setup();
    const socket = await t.connect();
    const got = t.spyOnSubscription("alerts");
    socket.push("this is not json");
    socket.push("[1,2,3]");
    socket.push('{"no":"type"}');
    socket.push({ type: "alerts", tenant_id: "acme", seq: "7", ts, alerts: [], total_open: 0 });
    socket.push({ type: "presence", who: "someone" });
    socket.push(new ArrayBuffer(8));
    socket.push(`{"type":"${"x".repeat(10_000)}`);
    socket.push(alerts(1));
    expect(got).toHaveBeenCalledTimes(1);
    expect(t.errors.map((e) => e.kind)).toEqual([
      "malformed_message",
      "malformed_message",
      "malformed_message",
      "malformed_message",
      "unknown_message",
      "malformed_message",
      "malformed_message",
    ]);
    const quoted = t.errors[6]?.data;
    expect(typeof quoted === "string" && quoted.length < 300).toBe(true);
    expect(t.client.state).toBe("live");
    expect(socket.closedByClient).toBeUndefined();
  });

  it("names the held channel a malformed push was for, so that its widget can say so", async () => {
    const t = setup();
    t.client.subscribe({ type: "alerts" });
    t.client.subscribe({ type: "device", device_id: "dev-1" });
    const socket = await t.connect();
    // Envelopes that break the contract, for held channels and one the client does not hold.
    socket.push({ type: "alerts", tenant_id: "acme", seq: 7, ts, alerts: [], total_open: "many" });
    socket.push({ type: "telemetry", tenant_id: "acme", device_id: "dev-1", seq: 1, ts });
    socket.push({ type: "telemetry", tenant_id: "acme", device_id: "dev-2", seq: 1, ts });
    socket.push({ type: "telemetry", tenant_id: "acme", device_id: "a.b", seq: 1, ts });
    expect(t.errors.map((e) => [e.kind, e.channel])).toEqual([
      ["malformed_message", { type: "alerts" }],
      ["malformed_message", { type: "device", device_id: "dev-1" }],
      ["malformed_message", undefined],
      ["malformed_message", undefined],
    ]);
  });

  it("reports gateway error replies with their code", async () => {
    const t = setup();
    const socket = await t.connect();
    socket.push({ type: "error", code: "too_many_subscriptions", message: "limit is 256" });
    expect(t.errors).toEqual([
      expect.objectContaining({ kind: "server_error", code: "too_many_subscriptions", message: "limit is 256" }),
    ]);
    expect(t.client.state).toBe("live");
  });
});

describe("heartbeat", () => {
  it("pings as the socket opens, then every 20 s", async () => {
    const t = setup();
    const socket = await t.connect();
    expect(socket.requests).toEqual([{ action: "ping" }]);
    await vi.advanceTimersByTimeAsync(19_999);
    expect(socket.requests).toEqual([{ action: "ping" }]);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.requests).toEqual([{ action: "ping" }, { action: "ping" }]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(socket.requests).toHaveLength(3);
  });

  it("treats 45 s of silence as a dead socket: closes it and reconnects", async () => {
    await heartbeatGivesUpAfter45s(setup());
  });

  it("stays connected while messages keep arriving", async () => {
    const t = setup();
    const socket = await t.connect();
    socket.autoPong = false;
    for (let i = 0; i < 12; i += 1) {
      await vi.advanceTimersByTimeAsync(20_000);
      socket.push({ type: "pong" });
    }
    expect(t.client.state).toBe("live");
    expect(t.factory.sockets).toHaveLength(1);
  });
});

describe("token renewal", () => {
  it("sends auth with a fresh ticket at 75 % of the token's lifetime, again and again", async () => {
    const t = setup();
    const socket = await t.connect();
    await vi.advanceTimersByTimeAsync(44_000);
    expect(t.getTicket).toHaveBeenCalledTimes(1);
    socket.push({ type: "pong" });
    await t.advanceAndSettle(1_000);
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    expect(socket.requests).toContainEqual({ action: "auth", token: "t2" });
    const exp = Math.floor(Date.now() / 1000) + 60;
    socket.push({ type: "authenticated", exp });
    expect(t.client.tokenExpiresAt).toBe(exp);
    await t.advanceAndSettle(45_000);
    expect(socket.requests).toContainEqual({ action: "auth", token: "t3" });
    expect(t.factory.sockets).toHaveLength(1);
  });

  it("retries a failed renewal and reports it", async () => {
    const good = ticketSource();
    let calls = 0;
    const getTicket = vi.fn(async () => {
      calls += 1;
      if (calls === 2) throw new Error("HTTP 502");
      return good();
    });
    const t = setup({ getTicket });
    const socket = await t.connect();
    await t.advanceAndSettle(45_000);
    await expectRenewalRetried(t, socket, getTicket);
  });

  // Refused (`invalid_token`), or not verified just then (`unavailable`, naming no channel).
  it.each([
    ["refuses the new token", { code: "invalid_token", message: "expired" }],
    ["cannot verify the new token just then", { code: "unavailable", message: "cannot verify the token right now; retry shortly" }],
  ])("retries a renewal when the gateway %s", async (_, answer) => {
    const t = setup();
    const socket = await t.connect();
    await t.advanceAndSettle(45_000);
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    socket.push({ type: "error", ...answer });
    await t.advanceAndSettle(5_000);
    expect(t.getTicket).toHaveBeenCalledTimes(3);
    expect(authRequests(socket).map((r) => r.token)).toEqual(["t2", "t3"]);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it("renews a short-lived token before it ends", async () => {
    // The shortest lifetime pulse-web issues (PULSE_TICKET_TTL_SECONDS=5).
    const getTicket = ticketSource(["ws://gw-a.test/api/v2/ws"], 5, { expiresIn: true });
    const t = setup({ getTicket });
    const socket = await t.connect();
    await t.advanceAndSettle(4_000);
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(socket.requests).toContainEqual({ action: "auth", token: "t2" });
  });

  /** A 5 s token (with `expires_in`) whose socket takes `openMs` to open after the ticket came. */
  async function slowOpen(openMs: number) {
    const getTicket = ticketSource(["ws://gw-a.test/api/v2/ws"], 5, { expiresIn: true });
    const t = setup({ getTicket });
    t.client.start();
    await settle();
    await t.advanceAndSettle(openMs);
    const socket = t.factory.last();
    socket.accept();
    await settle();
    return { getTicket, t, socket };
  }

  it("times renewal from the ticket's arrival, not from the socket opening", async () => {
    // A 5 s token whose socket takes 2 s to open: the 2 s are gone from its life too.
    const { getTicket, t, socket } = await slowOpen(2_000);
    await t.advanceAndSettle(1_700);
    expect(getTicket).toHaveBeenCalledTimes(1);
    // 3.8 s after the ticket came: past 75 % of its 5 s, well before it ends.
    await t.advanceAndSettle(100);
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(authRequests(socket)).toEqual([{ action: "auth", token: "t2" }]);
  });

  it("renews at once a token whose renewal fell due while the socket was opening", async () => {
    const { t, socket } = await slowOpen(4_000);
    await t.advanceAndSettle(0);
    expect(authRequests(socket)).toEqual([{ action: "auth", token: "t2" }]);
  });

  it("renews a token that lives longer than a timer can wait no sooner than the longest wait", async () => {
    // A year: 75 % of it is past the 2^31 - 1 ms a browser timer holds, which it would run at once.
    const year = 365 * 24 * 3600;
    const getTicket = ticketSource(["ws://gw-a.test/api/v2/ws"], year, { expiresIn: true });
    const t = setup({ getTicket });
    const socket = await t.connect();
    await t.advanceAndSettle(60_000);
    expect(getTicket).toHaveBeenCalledTimes(1);
    expect(authRequests(socket)).toEqual([]);
  });

  it("times renewal by the token's lifetime, not by a clock that disagrees with the server's", async () => {
    // The browser's clock is 20 s behind the server's: `expires_at` looks 80 s away.
    const getTicket = ticketSource(["ws://gw-a.test/api/v2/ws"], 60, { expiresIn: true, serverAhead: 20 });
    const t = setup({ getTicket });
    await t.connect();
    // Renewed at 75 % of the 60 s it really has, before the server would end it at 60 s.
    await t.advanceAndSettle(46_000);
    expect(getTicket).toHaveBeenCalledTimes(2);
  });

  it("without expires_in, times renewal by the token's own iat and exp", async () => {
    const b64 = (v: object) => btoa(JSON.stringify(v)).replace(/=+$/, "");
    let n = 0;
    const getTicket = vi.fn(async (): Promise<Ticket> => {
      n += 1;
      const iat = Math.floor(Date.now() / 1000) + 20; // the server's clock, 20 s ahead
      return {
        token: `${b64({ alg: "HS256" })}.${b64({ iat, exp: iat + 60, n })}.sig`,
        expires_at: iat + 60,
        gateways: ["ws://gw-a.test/api/v2/ws"],
      };
    });
    const t = setup({ getTicket });
    await t.connect();
    await t.advanceAndSettle(46_000);
    expect(getTicket).toHaveBeenCalledTimes(2);
  });

  it("aborts a ticket request still out when the client closes, or when the socket a renewal is for goes", async () => {
    const first = hangingTicketSource(1);
    const t = setup({ getTicket: first.getTicket });
    t.client.start();
    await settle();
    expect(first.signals[0]?.aborted).toBe(false);
    t.client.close();
    expect(first.signals[0]?.aborted).toBe(true);

    const renewal = hangingTicketSource(2);
    const { t: renewing, socket } = await atFirstRenewal(renewal.getTicket);
    expect(renewal.signals[1]?.aborted).toBe(false);
    socket.serverClose(1006);
    expect(renewal.signals[1]?.aborted).toBe(true);
    renewing.client.close();
  });

  it("gives up a renewal that hangs and tries again", async () => {
    const { getTicket, signals } = hangingTicketSource(2);
    const { t, socket } = await atFirstRenewal(getTicket);
    await t.advanceAndSettle(10_000);
    expect(signals[1]?.aborted).toBe(true);
    await expectRenewalRetried(t, socket, getTicket);
  });

  it("asks a ticket endpoint that fails fast again at most once a second, near the expiry too", async () => {
    const good = ticketSource();
    const getTicket = vi.fn(async (): Promise<Ticket> => {
      if (getTicket.mock.calls.length > 1) throw new Error("HTTP 503");
      return good();
    });
    const t = setup({ getTicket });
    const socket = await t.connect();
    socket.push({ type: "pong" });
    // Renewals at 45, 50 and 55 s, then at 57 s (3 s before the expiry), then once a second.
    await t.advanceAndSettle(59_500);
    expect(getTicket.mock.calls.length).toBeGreaterThanOrEqual(6);
    expect(getTicket.mock.calls.length).toBeLessThanOrEqual(8);
  });

  it("gives a slow renewal up in time to ask again before the token expires", async () => {
    const good = ticketSource();
    // The first renewal answers after 11 s, once its token has 4 s left.
    const getTicket = vi.fn(async (): Promise<Ticket> => {
      const ticket = await good();
      if (getTicket.mock.calls.length === 2) await new Promise((resolve) => setTimeout(resolve, 11_000));
      return ticket;
    });
    const { t, socket } = await atFirstRenewal(getTicket);
    // Given up within half the 15 s left, and asked again 3 s before the expiry at the latest.
    await t.advanceAndSettle(12_500);
    expect(getTicket).toHaveBeenCalledTimes(3);
    expect(authRequests(socket).map((r) => r.token)).toEqual(["t3"]);
    expect(t.errors.map((e) => e.kind)).toEqual(["renew_failed"]);
  });

  it("does not renew for a socket that is gone", async () => {
    const t = setup();
    const socket = await t.connect();
    socket.serverClose(1012);
    t.client.close();
    await t.advanceAndSettle(120_000);
    expect(t.getTicket).toHaveBeenCalledTimes(1);
  });
});

describe("subscription states", () => {
  it("is pending until the gateway acknowledges, then subscribed", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "fleet" });
    expect(t.client.subscriptionStatus({ type: "fleet" })?.state).toBe("pending");
    socket.push({ type: "subscribed", channel: "fleet" });
    expect(t.client.subscriptionStatus({ type: "fleet" })?.state).toBe("subscribed");
  });

  it("retries a subscribe refused for now, with backoff, until it is acknowledged", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const states: string[] = [];
    t.client.on("subscription", (s) => states.push(s.state));
    t.client.subscribe({ type: "device", device_id: "dev-1" });
    const subscribes = () => socket.requests.filter((r) => r.action === "subscribe").length;
    expect(subscribes()).toBe(1);
    socket.push({ type: "error", code: "unavailable", message: "retry shortly", channel: "device", device_id: "dev-1" });
    const status = t.client.subscriptionStatus({ type: "device", device_id: "dev-1" });
    expect(status?.state).toBe("retrying");
    expect(status?.error?.code).toBe("unavailable");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(subscribes()).toBe(2);
    // Asked again: pending, and the refusal still says why it is not updating.
    const asking = t.client.subscriptionStatus({ type: "device", device_id: "dev-1" });
    expect(asking?.state).toBe("pending");
    expect(asking?.error?.code).toBe("unavailable");
    socket.push({ type: "error", code: "rate_limited", message: "slow down", channel: "device", device_id: "dev-1" });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(subscribes()).toBe(2); // the backoff grew
    await vi.advanceTimersByTimeAsync(1_000);
    expect(subscribes()).toBe(3);
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-1" });
    expect(t.client.subscriptionStatus({ type: "device", device_id: "dev-1" })?.state).toBe("subscribed");
    expect(states).toEqual(["pending", "retrying", "pending", "retrying", "pending", "subscribed"]);
  });

  it("asks again soon for subscribes left unanswered when the gateway drops requests", async () => {
    const t = setup({ random: () => 0.5 });
    const socket = await t.connect();
    t.client.subscribe({ type: "alerts" });
    socket.push({ type: "subscribed", channel: "alerts" });
    t.client.subscribe({ type: "device", device_id: "dev-1" });
    const subscribes = () => socket.requests.filter((r) => r.action === "subscribe").length;
    expect(subscribes()).toBe(2);
    // The gateway's rate limit dropped the device subscribe; its error names no channel.
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    const device = t.client.subscriptionStatus({ type: "device", device_id: "dev-1" });
    expect(device?.state).toBe("retrying");
    expect(device?.error?.code).toBe("rate_limited");
    expect(t.client.subscriptionStatus({ type: "alerts" })?.state).toBe("subscribed");
    await vi.advanceTimersByTimeAsync(2_000);
    const resent = socket.requests.filter((r) => r.action === "subscribe").slice(2);
    expect(resent).toEqual([{ action: "subscribe", type: "device", device_id: "dev-1" }]);
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-1" });
    expect(t.client.subscriptionStatus({ type: "device", device_id: "dev-1" })?.state).toBe("subscribed");
  });

  it("asks again for dropped subscribes after a second, not a random backoff, and then at the paced rate", async () => {
    const t = setup({ random: () => 0 });
    for (let i = 0; i < 100; i += 1) t.client.subscribe({ type: "device", device_id: `dev-${i}` });
    const socket = await t.connect();
    const subscribes = () => socket.requests.filter((r) => r.action === "subscribe").length;
    expect(subscribes()).toBe(80);
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    // The gateway's allowance is spent: the 20 still waiting for a slot wait too.
    await vi.advanceTimersByTimeAsync(999);
    expect(subscribes()).toBe(80);
    await vi.advanceTimersByTimeAsync(1);
    expect(subscribes()).toBe(81);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(subscribes()).toBeLessThanOrEqual(80 + 41);
    await vi.advanceTimersByTimeAsync(2_000);
    const devices = socket.requests.flatMap((r) => (r.action === "subscribe" && r.type === "device" ? [r.device_id] : []));
    expect(devices).toHaveLength(180);
    expect(new Set(devices).size).toBe(100);
  });

  it("sends a renewal's auth again a second after a rate_limited error left it unanswered", async () => {
    const t = setup();
    const socket = await t.connect();
    await t.advanceAndSettle(45_000);
    expect(authRequests(socket).map((r) => r.token)).toEqual(["t2"]);
    // The gateway's rate limit may have dropped it; unanswered, the token would expire (4001).
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    await t.advanceAndSettle(999);
    expect(authRequests(socket)).toHaveLength(1);
    await t.advanceAndSettle(1);
    expect(authRequests(socket).map((r) => r.token)).toEqual(["t2", "t2"]);
    // Answered: a later rate_limited error sends nothing again.
    socket.push({ type: "authenticated", exp: Math.floor(Date.now() / 1000) + 60 });
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    await t.advanceAndSettle(5_000);
    expect(authRequests(socket)).toHaveLength(2);
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it("sends unanswered unsubscribes again a second after a rate_limited error; one held again subscribes once answered", async () => {
    const t = setup();
    const socket = await t.connect();
    const releases = [
      t.client.subscribe({ type: "fleet" }),
      t.client.subscribe({ type: "alerts" }),
      t.client.subscribe({ type: "device", device_id: "dev-1" }),
    ];
    socket.push({ type: "subscribed", channel: "fleet" });
    socket.push({ type: "subscribed", channel: "alerts" });
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-1" });
    socket.push(alerts(5));
    for (const release of releases) release();
    socket.push({ type: "unsubscribed", channel: "device", device_id: "dev-1" });
    // Held again before the gateway answered: it may still hold alerts (this unsubscribe may be
    // dropped), and would acknowledge a subscribe as a repeat, without the current value.
    const seen: unknown[] = [];
    t.client.watch({ type: "alerts" }, (m) => seen.push(m));
    const unsubscribes = () => socket.requests.filter((r) => r.action === "unsubscribe");
    const subscribes = () => socket.requests.filter((r) => r.action === "subscribe");
    expect(unsubscribes()).toHaveLength(3);
    expect(subscribes()).toHaveLength(3);
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    await vi.advanceTimersByTimeAsync(999);
    expect(unsubscribes()).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(100); // at the paced rate
    expect(unsubscribes().slice(3)).toEqual([
      { action: "unsubscribe", type: "fleet" },
      { action: "unsubscribe", type: "alerts" },
    ]);
    expect(subscribes()).toHaveLength(3);
    // Answered (`not_subscribed` is an answer too): not sent again, and alerts subscribes now,
    // getting the current value with the answer.
    socket.push({ type: "error", code: "not_subscribed", message: "not subscribed", channel: "fleet" });
    socket.push({ type: "unsubscribed", channel: "alerts" });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(subscribes().slice(3)).toEqual([{ action: "subscribe", type: "alerts" }]);
    socket.push({ type: "subscribed", channel: "alerts" });
    socket.push(alerts(6, 2));
    expect(seen).toEqual([alerts(6, 2)]);
    expect(t.client.subscriptionStatus({ type: "alerts" })?.state).toBe("subscribed");
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(unsubscribes()).toHaveLength(5);
    expect(subscribes()).toHaveLength(4);
  });

  it("paces the subscribes of many held channels within the gateway's rate as a socket opens", async () => {
    const t = setup();
    for (let i = 0; i < 220; i += 1) t.client.subscribe({ type: "device", device_id: `dev-${i}` });
    const socket = await t.connect();
    const subscribed = () => socket.requests.flatMap((r) => (r.action === "subscribe" && r.type === "device" ? [r.device_id] : []));
    // The gateway's defaults: bursts of 100 messages, refilled at 50 a second; every frame counts.
    expect(socket.sent.length).toBeLessThanOrEqual(100);
    expect(subscribed()).toHaveLength(80);
    await expectWithinTheGatewaysRate(socket, 5_000);
    expect(subscribed()).toHaveLength(220);
    expect(new Set(subscribed()).size).toBe(220);
    expect(t.client.subscriptionStatus({ type: "device", device_id: "dev-219" })?.state).toBe("pending");
  });

  it("paces the subscribes asked again after a refusal, with the rest", async () => {
    const t = setup();
    for (let i = 0; i < 220; i += 1) t.client.subscribe({ type: "device", device_id: `dev-${i}` });
    const socket = await t.connect();
    const subscribes = () => socket.requests.filter((r) => r.action === "subscribe").length;
    // The gateway has no NATS link just then: the first 80 are refused for now, together.
    for (let i = 0; i < 80; i += 1) {
      socket.push({ type: "error", code: "unavailable", message: "retry shortly", channel: "device", device_id: `dev-${i}` });
    }
    await expectWithinTheGatewaysRate(socket, 10_000);
    expect(subscribes()).toBe(300);
  });

  it("sends neither subscribe nor unsubscribe for a channel released while its subscribe waits for a slot", async () => {
    const t = setup();
    const releases = Array.from({ length: 100 }, (_, i) => t.client.subscribe({ type: "device", device_id: `dev-${i}` }));
    const socket = await t.connect();
    releases[99]?.();
    await vi.advanceTimersByTimeAsync(5_000);
    const forLast = socket.channelRequests.filter((r) => JSON.stringify(r).includes('"dev-99"'));
    expect(forLast).toEqual([]);
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(99);
  });

  it("marks a subscribe refused for good as failed and does not ask again", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "device", device_id: "dev-9" });
    socket.push({ type: "error", code: "too_many_subscriptions", message: "256 held", channel: "device", device_id: "dev-9" });
    expect(t.client.subscriptionStatus({ type: "device", device_id: "dev-9" })?.state).toBe("failed");
    await vi.advanceTimersByTimeAsync(120_000);
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(1);
  });

  it("asks again for a device the gateway does not list yet: one added a moment ago is listed soon", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const channel = { type: "device", device_id: "dev-new" } as const;
    t.client.subscribe(channel);
    socket.push({ type: "error", code: "unknown_device", message: "no such device", channel: "device", device_id: "dev-new" });
    expect(t.client.subscriptionStatus(channel)).toMatchObject({ state: "retrying", error: { code: "unknown_device" } });
    await vi.advanceTimersByTimeAsync(1_000);
    socket.push({ type: "pong" });
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(2);
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-new" });
    expect(t.client.subscriptionStatus(channel)?.state).toBe("subscribed");
  });

  it("sends a subscribe again when the gateway never answers it", async () => {
    const t = setup({ random: () => 0.5 });
    const socket = await t.connect();
    t.client.subscribe({ type: "alerts" });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.client.subscriptionStatus({ type: "alerts" })?.state).toBe("retrying");
    await vi.advanceTimersByTimeAsync(1_000);
    socket.push({ type: "pong" });
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(2);
  });

  it("goes back to pending while the socket is down", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.subscribe({ type: "fleet" });
    socket.push({ type: "subscribed", channel: "fleet" });
    socket.serverClose(1006);
    expect(t.client.subscriptionStatus({ type: "fleet" })?.state).toBe("pending");
  });

  it("unsubscribes a channel whose late answer came while its subscribe asked again waited for a slot", async () => {
    const t = setup({ random: () => 0.5 });
    const socket = await t.connect();
    const release = t.client.subscribe({ type: "alerts" });
    const forAlerts = () => socket.channelRequests.filter((r) => "type" in r && r.type === "alerts");
    // No answer in 10 s: asked again after the backoff (500 ms)...
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.client.subscriptionStatus({ type: "alerts" })?.state).toBe("retrying");
    // ...but the gateway's allowance is spent meanwhile, so that subscribe waits for a slot.
    socket.push({ type: "error", code: "rate_limited", message: "more than 50 messages per second" });
    await vi.advanceTimersByTimeAsync(500);
    expect(forAlerts()).toEqual([{ action: "subscribe", type: "alerts" }]);
    // The first subscribe's answer, late: the gateway holds alerts.
    socket.push({ type: "subscribed", channel: "alerts" });
    expect(t.client.subscriptionStatus({ type: "alerts" })?.state).toBe("subscribed");
    release();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(forAlerts()).toEqual([
      { action: "subscribe", type: "alerts" },
      { action: "unsubscribe", type: "alerts" },
    ]);
    // Held again once answered: a fresh subscribe, which brings the current value.
    socket.push({ type: "unsubscribed", channel: "alerts" });
    t.client.subscribe({ type: "alerts" });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(forAlerts().at(-1)).toEqual({ action: "subscribe", type: "alerts" });
    expect(t.errors.map((e) => e.code)).toEqual(["rate_limited"]);
  });

  it("sends no unsubscribe for a channel the gateway refused, for now or for good", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const retrying = { type: "device", device_id: "dev-1" } as const;
    const failed = { type: "device", device_id: "dev-2" } as const;
    const releases = [t.client.subscribe(retrying), t.client.subscribe(failed)];
    socket.push({ type: "error", code: "unavailable", message: "retry shortly", channel: "device", device_id: "dev-1" });
    socket.push({ type: "error", code: "too_many_subscriptions", message: "256 held", channel: "device", device_id: "dev-2" });
    expect(t.client.subscriptionStatus(retrying)?.state).toBe("retrying");
    expect(t.client.subscriptionStatus(failed)?.state).toBe("failed");
    for (const release of releases) release();
    await vi.advanceTimersByTimeAsync(5_000);
    // The gateway holds neither: an unsubscribe would only be answered `not_subscribed`.
    expect(socket.requests.filter((r) => r.action === "unsubscribe")).toEqual([]);
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(2);
  });

  it("asks again for a channel refused for want of room once a release frees a subscription", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const held = { type: "device", device_id: "dev-1" } as const;
    const refused = { type: "device", device_id: "dev-2" } as const;
    const release = t.client.subscribe(held);
    t.client.subscribe(refused);
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-1" });
    socket.push({ type: "error", code: "too_many_subscriptions", message: "1 held", channel: "device", device_id: "dev-2" });
    expect(t.client.subscriptionStatus(refused)?.state).toBe("failed");
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(2);
    socket.push({ type: "unsubscribed", channel: "device", device_id: "dev-1" });
    await vi.advanceTimersByTimeAsync(5_000);
    const subscribes = socket.requests.filter((r) => r.action === "subscribe");
    expect(subscribes).toHaveLength(3);
    expect(subscribes[2]).toMatchObject({ type: "device", device_id: "dev-2" });
    expect(t.client.subscriptionStatus(refused)?.state).toBe("pending");
  });

  it("does not ask again for a channel refused for want of room when an unsubscribe freed none", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const release = t.client.subscribe({ type: "device", device_id: "dev-1" });
    t.client.subscribe({ type: "device", device_id: "dev-2" });
    socket.push({ type: "subscribed", channel: "device", device_id: "dev-1" });
    socket.push({ type: "error", code: "too_many_subscriptions", message: "1 held", channel: "device", device_id: "dev-2" });
    release();
    await vi.advanceTimersByTimeAsync(0);
    // The gateway did not hold it after all: nothing was freed.
    socket.push({ type: "error", code: "not_subscribed", message: "not held", channel: "device", device_id: "dev-1" });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(socket.requests.filter((r) => r.action === "subscribe")).toHaveLength(2);
  });

  it("still unsubscribes a channel whose subscribe went unanswered: the gateway may yet take it", async () => {
    const t = setup({ random: () => 0.999 });
    const socket = await t.connect();
    const release = t.client.subscribe({ type: "fleet" });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.client.subscriptionStatus({ type: "fleet" })?.state).toBe("retrying");
    release();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(socket.channelRequests).toEqual([
      { action: "subscribe", type: "fleet" },
      { action: "unsubscribe", type: "fleet" },
    ]);
  });
});

describe("a tab shown again", () => {
  it("pings a live socket at once", async () => {
    const visibility = new FakeVisibility();
    const t = setup({ visibility });
    const socket = await t.connect();
    await vi.advanceTimersByTimeAsync(5_000);
    const pings = () => socket.requests.filter((r) => r.action === "ping").length;
    expect(pings()).toBe(1); // the one as the socket opened
    visibility.show();
    expect(pings()).toBe(2);
  });

  it("cuts a long backoff short", async () => {
    const visibility = new FakeVisibility();
    const getTicket = vi.fn(async (): Promise<Ticket> => {
      throw new Error("HTTP 502");
    });
    const t = setup({ visibility, getTicket, random: () => 0.999 });
    t.client.start();
    // Failures push the backoff towards its 30 s cap.
    await t.advanceAndSettle(60_000);
    const calls = getTicket.mock.calls.length;
    expect(t.client.state).toBe("reconnecting");
    visibility.show();
    await settle();
    expect(getTicket.mock.calls.length).toBe(calls + 1);
  });

  it("or the network coming back, does not cut short a wait the gateway asked for", async () => {
    const visibility = new FakeVisibility();
    const network = new FakeNetwork();
    const t = setup({ visibility, network });
    const first = await t.connect();
    first.serverClose(4029, "gateway connection limit reached; retry_after=60");
    await t.advanceAndSettle(1_000);
    visibility.show();
    network.set(false);
    network.set(true);
    await t.advanceAndSettle(1_000);
    expect(t.factory.sockets).toHaveLength(1);
    await t.advanceAndSettle(60_000);
    expect(t.factory.sockets).toHaveLength(2);
  });
});

describe("a hung ticket endpoint", () => {
  it("costs one attempt: the request is aborted at the deadline and the next attempt connects", async () => {
    const { getTicket, signals } = hangingTicketSource(1);
    const t = setup({ getTicket });
    t.client.start();
    await settle();
    expect(t.factory.sockets).toHaveLength(0);
    await t.advanceAndSettle(10_000);
    expect(signals[0]?.aborted).toBe(true);
    expect(t.errors.map((e) => e.kind)).toEqual(["ticket_failed"]);
    expect(t.client.state).toBe("reconnecting");
    const socket = await t.nextSocket();
    expect(socket).toBeDefined();
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(t.client.state).not.toBe("reconnecting");
  });
});

describe("a wall clock set back", () => {
  /**
   * The system clock is set an hour back (by hand, or by a time sync): `Date.now()` jumps, while
   * the timers and `performance.now()` go on as before.
   */
  function setWallClockBack(): void {
    vi.setSystemTime(Date.now() - 3_600_000);
  }

  it("does not keep a dead socket live: the heartbeat still gives up after 45 s", async () => {
    await heartbeatGivesUpAfter45s(setup(), setWallClockBack);
  });

  it("measures by an injected wall clock when given no monotonic one", async () => {
    // A client given its own clock (a simulated time) measures its waits by it: the browser's
    // `performance.now()`, standing still here, is not read.
    vi.spyOn(performance, "now").mockReturnValue(0);
    await heartbeatGivesUpAfter45s(setup({ now: () => Date.now() }));
    vi.mocked(performance.now).mockRestore();
  });

  it("waits out a wait the gateway asked for, no longer, when the network comes back", async () => {
    const t = setup();
    const first = await t.connect();
    first.serverClose(4029, "gateway connection limit reached; retry_after=60");
    await t.advanceAndSettle(1_000);
    setWallClockBack();
    t.network.set(false);
    t.network.set(true);
    // 60 s plus the backoff's jitter (500 ms), less the second already waited.
    expect(t.nextAttemptIn()).toBe(59_500);
    await t.advanceAndSettle(59_500);
    expect(t.factory.sockets).toHaveLength(2);
  });

  it("gives a socket that does not open the attempt's deadline, no more", async () => {
    let answer: (ticket: Ticket) => void = () => {};
    const later = ticketSource();
    let calls = 0;
    const getTicket = vi.fn((): Promise<Ticket> => {
      calls += 1;
      return calls > 1 ? later() : new Promise<Ticket>((resolve) => (answer = resolve));
    });
    const t = setup({ getTicket });
    t.client.start();
    await settle();
    setWallClockBack();
    answer({ token: "t1", expires_at: Math.floor(Date.now() / 1000) + 60, gateways: ["ws://gw-a.test/api/v2/ws"] });
    await settle();
    expect(t.factory.sockets).toHaveLength(1);
    await t.advanceAndSettle(10_000);
    expect(t.errors.map((e) => e.kind)).toEqual(["connect_timeout"]);
    expect(t.client.state).toBe("reconnecting");
  });

  it("renews the token at 75 % of its lifetime, counted from its arrival", async () => {
    const t = setup();
    t.client.start();
    await settle();
    setWallClockBack();
    t.factory.last().accept();
    await t.advanceAndSettle(45_000);
    expect(t.getTicket).toHaveBeenCalledTimes(2);
    expect(authRequests(t.factory.last()).map((r) => r.token)).toEqual(["t2"]);
  });
});

describe("fallback polling", () => {
  function fleetPoll(seq = 0) {
    return vi.fn(async (ctx: PollContext) => {
      ctx.publish(fleet(seq, 42));
    });
  }

  it("starts after 5 s without a live socket, polls every 30 s and stops when live", async () => {
    const poll = fleetPoll();
    const t = setup({ poll, random: () => 0.999 });
    const socket = await t.connect();
    const got: number[] = [];
    t.client.watch({ type: "fleet" }, (m) => got.push(m.counts.online));
    // Keep every attempt failing for a while.
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(poll).not.toHaveBeenCalled();
    expect(t.client.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(poll).toHaveBeenCalledTimes(1);
    expect(t.client.polling).toBe(true);
    expect(got).toEqual([42]);
    // Attempts keep failing while polling goes on.
    for (const s of t.factory.sockets.slice(1)) s.serverClose(1006);
    await t.advanceAndSettle(30_000);
    expect(poll).toHaveBeenCalledTimes(2);
    // Open whatever socket comes next: polling stops (and stays stopped once the gateway takes
    // the channel).
    const live = await t.nextSocket();
    expect(t.client.state).toBe("live");
    expect(t.client.polling).toBe(false);
    live.push({ type: "subscribed", channel: "fleet" });
    const polls = poll.mock.calls.length;
    await vi.advanceTimersByTimeAsync(120_000);
    expect(poll).toHaveBeenCalledTimes(polls);
    expect(live.attached).toBe(true);
    const pollingChanges = t.statuses.map((s) => `${s.state}:${s.polling}`);
    expect(pollingChanges).toContain("reconnecting:true");
    expect(pollingChanges.at(-1)).toBe("live:false");
  });

  it("polls on a live socket while the gateway refuses a held channel for now, and delivers only what the socket does not serve", async () => {
    const poll = vi.fn(async (ctx: PollContext) => {
      ctx.publish(fleet(0, 42));
      ctx.publish(alerts(0, 99));
    });
    const t = setup({ poll, random: () => 0.999 });
    const socket = await t.connect();
    const fleetGot: number[] = [];
    const alertsGot: number[] = [];
    t.client.watch({ type: "fleet" }, (m) => fleetGot.push(m.counts.online));
    t.client.watch({ type: "alerts" }, (m) => alertsGot.push(m.total_open));
    socket.push({ type: "subscribed", channel: "alerts" });
    socket.push(alerts(5, 7));
    // The gateway's NATS link is down: the fleet is refused for now, and asked again and again.
    const refuse = () => socket.push({ type: "error", code: "unavailable", message: "retry shortly", channel: "fleet" });
    refuse();
    await vi.advanceTimersByTimeAsync(4_999);
    expect(poll).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(poll).toHaveBeenCalledTimes(1);
    expect([t.client.state, t.client.polling]).toEqual(["live", true]);
    // The fleet from REST; the alerts stay the live ones.
    expect(fleetGot).toEqual([42]);
    expect(alertsGot).toEqual([7]);
    // Asked again and refused again: polling goes on, every 30 s.
    for (let i = 0; i < 3; i++) {
      await t.advanceAndSettle(30_000);
      if (t.client.subscriptionStatus({ type: "fleet" })?.state === "pending") refuse();
    }
    expect(t.client.polling).toBe(true);
    expect(poll.mock.calls.length).toBeGreaterThanOrEqual(3);
    // Taken at last: polling stops.
    await vi.advanceTimersByTimeAsync(30_000);
    socket.push({ type: "subscribed", channel: "fleet" });
    expect(t.client.polling).toBe(false);
    const polls = poll.mock.calls.length;
    await vi.advanceTimersByTimeAsync(120_000);
    expect(poll).toHaveBeenCalledTimes(polls);
    expect(t.statuses.map((s) => `${s.state}:${s.polling}`).slice(-2)).toEqual(["live:true", "live:false"]);
  });

  it("keeps polling through the asks again of a subscribe left unanswered, and leaves a dropped socket to its own threshold", async () => {
    const poll = fleetPoll();
    const t = setup({ poll, random: () => 0.999 });
    const socket = await t.connect();
    t.client.watch({ type: "fleet" }, () => {});
    // No answer in 10 s: retrying; polling 5 s later, and on through each subscribe asked again.
    await t.advanceAndSettle(15_000);
    expect(poll).toHaveBeenCalledTimes(1);
    const changes = () => t.statuses.map((s) => `${s.state}:${s.polling}`);
    const before = changes().length;
    await t.advanceAndSettle(90_000);
    expect(t.client.subscriptionStatus({ type: "fleet" })?.state).not.toBe("subscribed");
    expect(changes().slice(before)).not.toContain("live:false");
    expect(poll.mock.calls.length).toBeGreaterThanOrEqual(3);
    // The socket drops: polling goes on as for any lost socket, not stopped and started again.
    socket.serverClose(1006);
    await settle();
    expect(t.client.polling).toBe(true);
    expect(changes().slice(before)).not.toContain("live:false");
  });

  it("counts a socket as live only once the gateway answered: refused right after the upgrade, it never shows live and polling goes on", async () => {
    const poll = fleetPoll();
    const t = setup({ poll, random: () => 0.999 });
    t.client.start();
    await settle();
    /** A gateway that takes the upgrade, then closes the connection (capped) before a word. */
    const refuse = async (socket: FakeWebSocket) => {
      socket.autoPong = false;
      socket.accept();
      await settle();
      expect(t.client.state).not.toBe("live");
      socket.serverClose(4029, "too many connections for this tenant; retry_after=1");
    };
    await refuse(t.factory.last());
    while (Date.now() - t.statuses[0]!.since < 6_000) await refuse(await t.nextSocket(false));
    expect(t.states()).not.toContain("live");
    expect(poll).toHaveBeenCalled();
    expect(t.client.polling).toBe(true);
    // A gateway that answers: live, and polling stops.
    const socket = await t.nextSocket(false);
    socket.accept();
    await settle();
    expect(t.client.state).toBe("live");
    expect(t.client.polling).toBe(false);
  });

  it("does not poll when the connection comes back within 5 s", async () => {
    const poll = fleetPoll();
    const t = setup({ poll });
    const socket = await t.connect();
    socket.serverClose(1006);
    await t.nextSocket();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(poll).not.toHaveBeenCalled();
  });

  it("polls when the first connection takes longer than 5 s", async () => {
    const poll = fleetPoll();
    const t = setup({ poll, connectTimeoutMs: 60_000 });
    t.client.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(poll).toHaveBeenCalledTimes(1);
    expect(t.client.state).toBe("connecting");
  });

  it("publishes polled data even though REST bodies carry seq 0", async () => {
    const poll = fleetPoll(0);
    const t = setup({ poll, random: () => 0.999 });
    const socket = await t.connect();
    const got = t.spyOnSubscription("fleet");
    socket.push(fleet(500));
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(got).toHaveBeenCalledTimes(2);
    expect(got.mock.calls[1]?.[0]).toMatchObject({ seq: 0, counts: { online: 42 } });
  });

  it("after polling, the gateway's snapshot with the seq seen before still replaces the polled one", async () => {
    const poll = fleetPoll(0);
    const t = setup({ poll, random: () => 0.999 });
    const socket = await t.connect();
    const got = t.spyOnSubscription("fleet");
    socket.push(fleet(500, 1));
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(got.mock.calls.at(-1)?.[0]).toMatchObject({ seq: 0, counts: { online: 42 } });
    // Back live: the gateway sends its current snapshot again, unchanged since seq 500.
    const back = await t.nextSocket();
    back.push(fleet(500, 1));
    expect(got.mock.calls.at(-1)?.[0]).toMatchObject({ seq: 500, counts: { online: 1 } });
    // Its repeats are duplicates again, and older ones stay dropped.
    const calls = got.mock.calls.length;
    back.push(fleet(500, 1));
    back.push(fleet(499, 7));
    expect(got.mock.calls.length).toBe(calls);
  });

  it("stops polling when the app closes the client", async () => {
    const poll = fleetPoll();
    const t = setup({ poll });
    t.client.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(poll).toHaveBeenCalledTimes(1);
    t.client.close();
    expect(t.client.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(poll).toHaveBeenCalledTimes(1);
  });
});

describe("offline", () => {
  it("close() goes offline, closes the socket and never reconnects", async () => {
    const t = setup();
    const socket = await t.connect();
    t.client.close();
    expect(t.client.state).toBe("offline");
    expect(t.client.status.reason).toBe("closed");
    expect(socket.closedByClient).toEqual({ code: 1000, reason: "client closed" });
    socket.serverClose(1000);
    await t.advanceAndSettle(10 * 60_000);
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.states()).toEqual(["connecting", "live", "offline"]);
  });

  it("close() while a ticket is being fetched opens nothing", async () => {
    const t = setup();
    t.client.start();
    t.client.close();
    await settle();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.factory.sockets).toHaveLength(0);
    expect(t.client.state).toBe("offline");
  });

  it("restores subscriptions when started again after close()", async () => {
    const t = setup();
    await t.connect();
    t.client.subscribe({ type: "alerts" });
    t.client.close();
    t.client.start();
    await settle();
    t.factory.last().accept();
    expect(t.factory.last().channelRequests).toEqual([{ action: "subscribe", type: "alerts" }]);
  });

  it("goes offline when the browser reports no network, and reconnects within a second when it is back", async () => {
    const t = setup();
    const socket = await t.connect();
    t.network.set(false);
    expect(t.client.state).toBe("offline");
    expect(t.client.status.reason).toBe("network");
    expect(socket.closedByClient).toBeDefined();
    // Tried again only at the longest backoff (in case the browser is wrong), not before.
    await t.advanceAndSettle(29_999);
    expect(t.factory.sockets).toHaveLength(1);
    t.network.set(true);
    expect(t.client.state).toBe("reconnecting");
    // Within the restart jitter (random 0.5 of 1 s), not at the same instant as every tab.
    expect(t.nextAttemptIn()).toBe(500);
    await t.advanceAndSettle(500);
    expect(t.factory.sockets).toHaveLength(2);
    t.factory.last().accept();
    await settle();
    expect(t.states()).toEqual(["connecting", "live", "offline", "reconnecting", "live"]);
  });

  it("does not connect while the browser is offline at start", async () => {
    const t = setup();
    t.network.online = false;
    t.client.start();
    await settle();
    expect(t.client.state).toBe("offline");
    expect(t.getTicket).not.toHaveBeenCalled();
    t.network.set(true);
    await t.advanceAndSettle(1_000);
    t.factory.last().accept();
    await settle();
    expect(t.client.state).toBe("live");
  });

  describe("when the browser wrongly reports no network (and never fires `online`)", () => {
    /** A client whose browser says it is offline from the start: `offline`, and no ticket asked. */
    function offlineAtStart(overrides: Partial<PulseClientOptions> = {}) {
      const t = setup(overrides);
      t.network.online = false;
      t.client.start();
      return t;
    }

    /** {@link offlineAtStart}, once the tab shown made it try, and the socket opened: live. */
    async function liveThoughOffline() {
      const visibility = new FakeVisibility();
      const t = offlineAtStart({ visibility });
      await settle();
      visibility.show();
      await settle();
      t.factory.last().accept();
      await settle();
      return t;
    }

    it("still tries at the longest backoff, spread, and stays offline while the tries fail", async () => {
      const t = offlineAtStart();
      await settle();
      expect(t.client.state).toBe("offline");
      // 30 s, and a spread of up to half of it (`random` 0.5 here: 7.5 s), said in the status.
      expect(t.nextAttemptIn()).toBe(37_500);
      await t.advanceAndSettle(37_499);
      expect(t.getTicket).not.toHaveBeenCalled();
      await t.advanceAndSettle(1);
      expect(t.getTicket).toHaveBeenCalledTimes(1);
      // The network is really down: the socket fails, and the next try is as far again.
      t.factory.last().serverClose(1006);
      await settle();
      expect(t.states()).toEqual(["connecting", "offline"]);
      expect(t.client.status.reason).toBe("network");
      expect(t.nextAttemptIn()).toBe(37_500);
      await t.advanceAndSettle(37_499);
      expect(t.getTicket).toHaveBeenCalledTimes(1);
      await t.advanceAndSettle(1);
      expect(t.getTicket).toHaveBeenCalledTimes(2);
      // This time it opens: the network works whatever the browser says.
      t.factory.last().accept();
      await settle();
      expect(t.client.state).toBe("live");
    });

    it("tries at once when a fallback poll succeeds", async () => {
      const poll = vi.fn(async (ctx: PollContext) => ctx.publish(fleet(0, 42)));
      const t = offlineAtStart({ poll });
      await t.advanceAndSettle(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      expect(t.getTicket).toHaveBeenCalledTimes(1);
      t.factory.last().accept();
      await settle();
      expect(t.client.state).toBe("live");
      expect(t.client.polling).toBe(false);
    });

    it("does not try on a failed poll", async () => {
      const poll = vi.fn(async () => {
        throw new Error("Failed to fetch");
      });
      const t = offlineAtStart({ poll });
      await t.advanceAndSettle(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      expect(t.getTicket).not.toHaveBeenCalled();
    });

    it("tries at once when the tab is shown", async () => {
      const visibility = new FakeVisibility();
      const t = offlineAtStart({ visibility });
      await settle();
      visibility.show();
      await settle();
      expect(t.getTicket).toHaveBeenCalledTimes(1);
      t.factory.last().accept();
      await settle();
      expect(t.client.state).toBe("live");
    });

    it("replaces a try still under way when the network comes back", async () => {
      const t = offlineAtStart();
      await t.advanceAndSettle(37_500);
      const probe = t.factory.last();
      t.network.set(true);
      expect(probe.closedByClient).toBeDefined();
      expect(probe.attached).toBe(false);
      expect(t.client.state).toBe("reconnecting");
      expect(t.nextAttemptIn()).toBe(500);
      const socket = await t.nextSocket();
      expect(t.factory.sockets).toEqual([probe, socket]);
      expect(t.client.state).toBe("live");
    });

    it("once a connection worked, reconnects with the usual backoff until the browser reports a change", async () => {
      const t = await liveThoughOffline();
      t.factory.last().serverClose(1006);
      expect(t.client.state).toBe("reconnecting");
      expect(t.nextAttemptIn()).toBe(500);
      // The browser reports offline again (an `offline` event): believed again.
      await t.nextSocket();
      t.network.set(false);
      expect(t.client.state).toBe("offline");
      expect(t.nextAttemptIn()).toBe(37_500);
    });

    it("believes the browser again after a close and a start", async () => {
      const t = await liveThoughOffline();
      expect(t.client.state).toBe("live");
      t.client.close();
      // The network goes down while the client is closed: no event reaches it.
      t.client.start();
      await settle();
      expect(t.client.state).toBe("offline");
      expect(t.client.status.reason).toBe("network");
    });

    it("leaves no try armed when a `connection` handler closes the client as it goes offline", async () => {
      const t = setup();
      t.client.on("connection", (status) => {
        if (status.state === "offline" && status.reason === "network") t.client.close();
      });
      t.client.start();
      await settle();
      t.network.set(false);
      expect(t.client.status.reason).toBe("closed");
      expect(vi.getTimerCount()).toBe(0);
    });
  });

  it("skips the backoff wait when the network comes back", async () => {
    const t = setup({ random: () => 0.999 });
    await t.failAttempts(5);
    t.factory.last().serverClose(1006);
    expect(t.nextAttemptIn()).toBeGreaterThan(20_000);
    const count = t.factory.sockets.length;
    t.network.set(true);
    expect(t.nextAttemptIn()).toBeLessThan(1_000);
    await t.advanceAndSettle(1_000);
    expect(t.factory.sockets).toHaveLength(count + 1);
  });

  it("keeps backing off when the network flaps, rather than retrying at each return", async () => {
    const t = setup({ random: () => 0.999 });
    await t.failAttempts(1);
    const waits: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      t.network.set(false);
      t.network.set(true);
      waits.push(t.nextAttemptIn());
      await t.advanceAndSettle(1_000);
    }
    // The first return is a recovery (jittered within 1 s); the next ones, each within 10 s
    // of the last, back off.
    expect(waits[0]).toBeLessThan(1_000);
    expect(waits.slice(1)).toEqual([999, 1_998, 3_996]);
  });
});

describe("events", () => {
  type Sent = { action: string; type?: string; topic?: string; since?: number };
  const subscribes = (socket: FakeWebSocket, topic = "tickets") =>
    (socket.requests as Sent[]).filter((r) => r.action === "subscribe" && r.topic === topic);

  /** Pushes `steps` on `socket` in order: a number is a `tickets` event with that seq. */
  function pushTimeline(socket: FakeWebSocket, steps: (number | object)[]): void {
    for (const step of steps) socket.push(typeof step === "number" ? event("tickets", step) : step);
  }

  /** Drops `socket` without a close frame (1006) and returns the one the client opens next. */
  async function dropped(t: ReturnType<typeof setup>, socket: FakeWebSocket): Promise<FakeWebSocket> {
    socket.serverClose(1006);
    return t.nextSocket();
  }

  /**
   * A client watching `tickets` whose socket drops without a close frame once `before` has reached
   * it: the watch, and the socket the client opens next.
   */
  async function droppedAfter(before: (number | object)[]) {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    pushTimeline(first, before);
    return { t, w, second: await dropped(t, first) };
  }

  function watchTickets(t: ReturnType<typeof setup>, topic = "tickets") {
    const log: string[] = [];
    const resets: EventsReset[] = [];
    const release = t.client.watchEvents(topic, {
      onEvent: (m) => log.push(`event:${m.seq}`),
      onReset: (r) => {
        resets.push(r);
        log.push(`reset:${r.reason}`);
      },
    });
    return { log, resets, release, seqs: () => log.filter((l) => l.startsWith("event:")).map((l) => Number(l.slice(6))) };
  }

  it("subscribes the first time without since", async () => {
    const t = setup();
    const socket = await t.connect();
    watchTickets(t);
    expect(subscribes(socket)).toEqual([{ action: "subscribe", type: "events", topic: "tickets" }]);
    expect(t.client.lastEventSeq("tickets")).toBeUndefined();
  });

  it("resumes with since = the last event delivered after a reconnect, and drops the replayed duplicates", async () => {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    first.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 40 });
    first.push(event("tickets", 41));
    expect(t.client.lastEventSeq("tickets")).toBe(41);
    const second = await dropped(t, first);
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 41 }]);
    second.push({ type: "subscribed", channel: "events", topic: "tickets" });
    // A replay overlapping what was delivered, then the missed events, then live ones.
    pushTimeline(second, [41, 42, 43, 43, 44]);
    expect(w.seqs()).toEqual([41, 42, 43, 44]);
    expect(w.resets).toEqual([]);
    expect(t.client.lastEventSeq("tickets")).toBe(44);
  });

  it("resumes with since after a 4008 (slow consumer) close", async () => {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    for (const seq of [1, 2, 3]) first.push(event("tickets", seq));
    first.serverClose(4008, "slow consumer");
    const second = await t.nextSocket();
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 3 }]);
    second.push(event("tickets", 4));
    expect(w.seqs()).toEqual([1, 2, 3, 4]);
  });

  it("resumes with since on another gateway after a 1012 drain", async () => {
    const t = setup({ random: () => 0 });
    const first = await t.connect();
    const w = watchTickets(t);
    first.push(event("tickets", 7));
    first.serverClose(1012, "draining");
    const second = await t.nextSocket();
    expect(new URL(second.url).host).not.toBe(new URL(first.url).host);
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 7 }]);
    second.push(event("tickets", 8));
    expect(w.seqs()).toEqual([7, 8]);
    // And again from there after the next drop.
    second.serverClose(1006);
    const third = await t.nextSocket();
    expect(subscribes(third)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 8 }]);
  });

  it("takes the seq of subscribed as the baseline when no event arrived yet", async () => {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    first.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 41 });
    expect(t.client.lastEventSeq("tickets")).toBe(41);
    const second = await dropped(t, first);
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 41 }]);
    second.push({ type: "subscribed", channel: "events", topic: "tickets" });
    second.push(event("tickets", 42));
    expect(w.seqs()).toEqual([42]);
    expect(w.resets).toEqual([]);
  });

  it("without a baseline, takes the first event as it and resumes from there", async () => {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    first.push({ type: "subscribed", channel: "events", topic: "tickets" }); // seq unknown
    pushTimeline(first, [500, 501]);
    expect(w.seqs()).toEqual([500, 501]);
    expect(w.resets).toEqual([]);
    const second = await dropped(t, first);
    expect(subscribes(second)[0]?.since).toBe(501);
  });

  it("tells the subscribers to refetch when resubscribing a topic it has no position on", async () => {
    const { w, second } = await droppedAfter([{ type: "subscribed", channel: "events", topic: "tickets" }]); // seq unknown, no event
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets" }]);
    expect(w.resets).toEqual([{ topic: "tickets", oldest: null, reason: "gap", last: null }]);
  });

  /** Opens `socket` and has the gateway close it (4029) before it answered anything. */
  function refusedAfterUpgrade(socket: FakeWebSocket): void {
    socket.autoPong = false;
    socket.accept();
    socket.serverClose(4029, "too many connections for this tenant; retry_after=1");
  }

  it("announces no reset for a topic whose subscribe no gateway answered (a socket refused right after the upgrade)", async () => {
    const t = setup();
    const w = watchTickets(t);
    t.client.start();
    await settle();
    const first = t.factory.last();
    refusedAfterUpgrade(first);
    expect(subscribes(first)).toEqual([{ action: "subscribe", type: "events", topic: "tickets" }]);
    const second = await t.nextSocket();
    expect(subscribes(second)).toEqual([{ action: "subscribe", type: "events", topic: "tickets" }]);
    second.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 40 });
    second.push(event("tickets", 41));
    expect(w.log).toEqual(["event:41"]);
    expect(w.resets).toEqual([]);
  });

  it("still tells the subscribers to refetch, on every socket that follows, for a topic acknowledged without a position", async () => {
    const { t, w, second } = await droppedAfter([{ type: "subscribed", channel: "events", topic: "tickets" }]); // seq unknown, no event
    expect(w.resets).toHaveLength(1);
    // The gateway closes this one before it took the subscribe: what happens until the next
    // socket's subscribe is missed too, after the refetch the first reset asked for.
    second.serverClose(4029, "too many connections for this tenant; retry_after=1");
    const third = await t.nextSocket();
    expect(subscribes(third)).toEqual([{ action: "subscribe", type: "events", topic: "tickets" }]);
    expect(w.resets).toEqual([
      { topic: "tickets", oldest: null, reason: "gap", last: null },
      { topic: "tickets", oldest: null, reason: "gap", last: null },
    ]);
  });

  it("passes an events_reset to the subscribers and takes the next event as the new baseline", async () => {
    const t = setup();
    const first = await t.connect();
    const w = watchTickets(t);
    const onBus = vi.fn();
    t.client.on("events_reset:tickets", onBus);
    first.push(event("tickets", 10));
    const second = await dropped(t, first);
    expect(subscribes(second)[0]?.since).toBe(10);
    pushTimeline(second, [
      { type: "subscribed", channel: "events", topic: "tickets" },
      { type: "events_reset", topic: "tickets", oldest: 57, reason: "expired" },
      57,
      58,
    ]);
    expect(w.log).toEqual(["event:10", "reset:expired", "event:57", "event:58"]);
    expect(w.resets).toEqual([{ topic: "tickets", oldest: 57, reason: "expired", last: 10 }]);
    expect(onBus).toHaveBeenCalledTimes(1);
    expect(t.client.lastEventSeq("tickets")).toBe(58);
  });

  it("after a reset, takes the next event as the baseline whatever its seq", async () => {
    const t = setup();
    const socket = await t.connect();
    const w = watchTickets(t);
    pushTimeline(socket, [
      10,
      { type: "events_reset", topic: "tickets", oldest: null, reason: "unavailable" },
      80, // no second reset: this one was announced
      81,
    ]);
    expect(w.log).toEqual(["event:10", "reset:unavailable", "event:80", "event:81"]);
    expect(w.resets[0]).toEqual({ topic: "tickets", oldest: null, reason: "unavailable", last: 10 });
  });

  it("resumes just before the announced oldest event when the socket drops right after a reset", async () => {
    const { second } = await droppedAfter([10, { type: "events_reset", topic: "tickets", oldest: 57, reason: "limit" }]);
    expect(subscribes(second)[0]?.since).toBe(56);
  });

  it("tells the subscribers about a gap it sees itself, before the event after it", async () => {
    const t = setup();
    const socket = await t.connect();
    const w = watchTickets(t);
    pushTimeline(socket, [10, 13]);
    pushTimeline(socket, [
      12, // behind the new position
      14,
    ]);
    expect(w.log).toEqual(["event:10", "reset:gap", "event:13", "event:14"]);
    expect(w.resets).toEqual([{ topic: "tickets", oldest: 13, reason: "gap", last: 10 }]);
  });

  it("treats a resumed subscription whose reply names a newer seq as a gap", async () => {
    const { w, second } = await droppedAfter([10]);
    second.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 20 });
    second.push(event("tickets", 21));
    expect(w.log).toEqual(["event:10", "reset:gap", "event:21"]);
    expect(w.resets).toEqual([{ topic: "tickets", oldest: 21, reason: "gap", last: 10 }]);
  });

  it("starts a released and held again topic fresh: no since, no old position", async () => {
    const t = setup();
    const socket = await t.connect();
    const first = watchTickets(t);
    socket.push(event("tickets", 10));
    first.release();
    expect(t.client.lastEventSeq("tickets")).toBeUndefined();
    expect((socket.requests as Sent[]).at(-1)).toEqual({ action: "unsubscribe", type: "events", topic: "tickets" });
    const second = watchTickets(t);
    // Subscribed again once the gateway answered the unsubscribe.
    expect(subscribes(socket)).toHaveLength(1);
    socket.push({ type: "unsubscribed", channel: "events", topic: "tickets" });
    expect(subscribes(socket)).toEqual([
      { action: "subscribe", type: "events", topic: "tickets" },
      { action: "subscribe", type: "events", topic: "tickets" },
    ]);
    socket.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 12 });
    socket.push(event("tickets", 13));
    expect(second.log).toEqual(["event:13"]);
    expect(first.log).toEqual(["event:10"]);
  });

  it("keeps a second holder on the same position and sends one subscribe", async () => {
    const t = setup();
    const socket = await t.connect();
    const a = watchTickets(t);
    const b = watchTickets(t);
    socket.push(event("tickets", 1));
    a.release();
    socket.push(event("tickets", 2));
    expect(subscribes(socket)).toHaveLength(1);
    expect(a.seqs()).toEqual([1]);
    expect(b.seqs()).toEqual([1, 2]);
    expect(t.client.lastEventSeq("tickets")).toBe(2);
  });

  it("ignores resets and baselines for topics it does not hold", async () => {
    const t = setup();
    const socket = await t.connect();
    const reset = vi.fn();
    t.client.on("events_reset:orders", reset);
    socket.push({ type: "events_reset", topic: "orders", oldest: 1, reason: "expired" });
    socket.push({ type: "subscribed", channel: "events", topic: "orders", seq: 5 });
    expect(reset).not.toHaveBeenCalled();
    expect(t.client.lastEventSeq("orders")).toBeUndefined();
    expect(t.errors).toEqual([]);
  });

  it("starts over without since when the gateway refuses the since", async () => {
    const { t, w, second } = await droppedAfter([10]);
    second.push({ type: "error", code: "invalid_since", message: "since must be an integer", channel: "events", topic: "tickets" });
    expect(subscribes(second)).toEqual([
      { action: "subscribe", type: "events", topic: "tickets", since: 10 },
      { action: "subscribe", type: "events", topic: "tickets" },
    ]);
    expect(w.resets).toEqual([{ topic: "tickets", oldest: null, reason: "gap", last: 10 }]);
    expect(t.errors.map((e) => e.code)).toEqual(["invalid_since"]);
    second.push({ type: "subscribed", channel: "events", topic: "tickets", seq: 30 });
    second.push(event("tickets", 31));
    expect(w.seqs()).toEqual([10, 31]);
  });

  it("refuses an invalid topic without holding anything", async () => {
    const t = setup();
    await t.connect();
    expect(() => t.client.watchEvents("a.>", { onEvent: () => {}, onReset: () => {} })).toThrow(TypeError);
    expect(t.client.channels).toEqual([]);
    expect(t.client.bus.listenerCount("events:a.>")).toBe(0);
  });

  describe("while polling over REST", () => {
    it("hands the poll every held topic's position, and resumes the socket after the last event polled", async () => {
      const seen: EventsPosition[][] = [];
      const poll = vi.fn(async (ctx: PollContext) => {
        seen.push([...ctx.events]);
        for (const position of ctx.events) {
          if (position.topic !== "tickets" || position.after === null) continue;
          // As GET /api/v2/events?after=… lists them: ascending, the first one maybe already seen.
          for (const seq of [position.after, position.after + 1, position.after + 2]) ctx.publish(event("tickets", seq));
        }
      });
      const t = setup({ poll, random: () => 0.999 });
      const first = await t.connect();
      const w = watchTickets(t);
      t.client.subscribe({ type: "events", topic: "orders" });
      first.push(event("tickets", 5));
      first.serverClose(1006);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      expect(seen[0]).toEqual([
        { topic: "tickets", after: 5 },
        { topic: "orders", after: null },
      ]);
      expect(w.seqs()).toEqual([5, 6, 7]);
      for (const s of t.factory.sockets.slice(1)) s.serverClose(1006);
      await t.advanceAndSettle(30_000);
      expect(seen[1]?.[0]).toEqual({ topic: "tickets", after: 7 });
      expect(w.seqs()).toEqual([5, 6, 7, 8, 9]);
      const live = await t.nextSocket();
      expect(subscribes(live)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 9 }]);
      expect(w.resets).toEqual([]);
    });

    it("tells the subscribers about a gap in polled events", async () => {
      const poll = vi.fn(async (ctx: PollContext) => {
        ctx.publish(event("tickets", 20)); // the retained history starts past the position
      });
      const t = setup({ poll, random: () => 0.999 });
      const first = await t.connect();
      const w = watchTickets(t);
      first.push(event("tickets", 5));
      first.serverClose(1006);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(w.log).toEqual(["event:5", "reset:gap", "event:20"]);
    });

    it("tells the subscribers to refetch before a polled event on a topic subscribed without a position", async () => {
      const poll = vi.fn(async (ctx: PollContext) => {
        // Without a position, the poll can only fetch the newest event (limit=1).
        for (const position of ctx.events) if (position.after === null) ctx.publish(event(position.topic, 30));
      });
      const t = setup({ poll, random: () => 0.999 });
      const first = await t.connect();
      const w = watchTickets(t);
      first.push({ type: "subscribed", channel: "events", topic: "tickets" }); // seq unknown
      first.serverClose(1006); // before any event
      await vi.advanceTimersByTimeAsync(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      // Events between the subscribe and 30 may have been missed.
      expect(w.log).toEqual(["reset:gap", "event:30"]);
      expect(w.resets).toEqual([{ topic: "tickets", oldest: 30, reason: "gap", last: null }]);
      const live = await t.nextSocket();
      expect(subscribes(live)).toEqual([{ action: "subscribe", type: "events", topic: "tickets", since: 30 }]);
      live.push(event("tickets", 31));
      expect(w.log).toEqual(["reset:gap", "event:30", "event:31"]);
    });

    it("reports a malformed polled event and ignores events of topics it does not hold", async () => {
      const poll = vi.fn(async (ctx: PollContext) => {
        ctx.publish({ type: "event", topic: "tickets", seq: "7" } as unknown as EventMessage);
        ctx.publish(event("orders", 1));
      });
      const t = setup({ poll });
      const w = watchTickets(t);
      const orders = vi.fn();
      t.client.on("events:orders", orders);
      t.client.start();
      await vi.advanceTimersByTimeAsync(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      expect(w.log).toEqual([]);
      expect(orders).not.toHaveBeenCalled();
      expect(t.errors.map((e) => e.kind)).toEqual(["malformed_message"]);
      expect(t.client.lastEventSeq("tickets")).toBeUndefined();
    });

    it("stays closed, polling nothing, when a connection handler closes it as it starts", async () => {
      const poll = vi.fn(async () => undefined);
      const t = setup({ poll });
      t.client.on("connection", (s) => {
        if (s.state === "connecting") t.client.close();
      });
      t.client.start();
      await vi.advanceTimersByTimeAsync(120_000);
      expect(poll).not.toHaveBeenCalled();
      expect(t.factory.sockets).toHaveLength(0);
    });

    it("reports a polled body without a snapshot type and goes on with the rest of the poll", async () => {
      const poll = vi.fn(async (ctx: PollContext) => {
        ctx.publish({ error: "gateway timeout" } as unknown as DataMessage);
        ctx.publish({ type: "telemetry", seq: 0 } as unknown as DataMessage);
        ctx.publish(fleet(0, 42));
      });
      const t = setup({ poll });
      const onFleet = vi.fn();
      t.client.on("fleet", onFleet);
      t.client.start();
      await vi.advanceTimersByTimeAsync(5_000);
      expect(t.errors.map((e) => e.kind)).toEqual(["malformed_message", "malformed_message"]);
      expect(onFleet).toHaveBeenCalledTimes(1);
    });
  });
});
