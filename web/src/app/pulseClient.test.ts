import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { alwaysOnline, PulseClient, TicketError, type AlertsMessage, type DataMessage } from "../client/index.js";
import { fakeClient, settle } from "../client/testing/fakes.js";
import { activityEvent, activityPage, alert, alertsMessage } from "../model/testing/fixtures.js";
import { onSessionLost } from "./api.js";
import { checkSessionWhenForbidden, restFallback, sessionTicketFetcher } from "./pulseClient.js";
import { ticketHolder, watchSessionChanges } from "./sessionChanges.js";

describe("sessionTicketFetcher", () => {
  const lost = vi.fn();
  beforeEach(() => onSessionLost(lost));
  afterEach(() => {
    onSessionLost(() => {});
    lost.mockReset();
  });

  it("reports a lost session on 401 and still fails the attempt", async () => {
    const fetchTicket = sessionTicketFetcher(null, () => Promise.reject(new TicketError("no", 401)));
    await expect(fetchTicket()).rejects.toThrow("no");
    expect(lost).toHaveBeenCalledTimes(1);
  });

  it("leaves other failures to the client's retries", async () => {
    await expect(sessionTicketFetcher(null, () => Promise.reject(new TicketError("down", 503)))()).rejects.toThrow("down");
    await expect(sessionTicketFetcher(null, () => Promise.reject(new TicketError("network")))()).rejects.toThrow("network");
    expect(lost).not.toHaveBeenCalled();
  });

  it("passes a ticket through", async () => {
    const ticket = { token: "t", expires_at: 1, gateways: ["ws://g"] };
    await expect(sessionTicketFetcher(null, () => Promise.resolve(ticket))()).resolves.toBe(ticket);
  });

  /** A token whose claims are `claims` (the signature is the gateway's business). */
  const tokenOf = (claims: object) =>
    `e30.${btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(claims)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}.sig`;
  const me = { tenant_id: "acme", email: "zoë@acme.example" };

  it("uses a ticket of the page's user, and reports one of another user as a changed session", async () => {
    const changed = vi.fn();
    const stop = watchSessionChanges(changed);
    try {
      const ours = { token: tokenOf({ ...me, sub: "1" }), expires_at: 1, gateways: ["ws://g"] };
      await expect(sessionTicketFetcher(me, () => Promise.resolve(ours))()).resolves.toBe(ours);
      expect(changed).not.toHaveBeenCalled();
      for (const other of [{ ...me, tenant_id: "beta" }, { ...me, email: "eve@acme.example" }]) {
        const theirs = { token: tokenOf(other), expires_at: 1, gateways: ["ws://g"] };
        await expect(sessionTicketFetcher(me, () => Promise.resolve(theirs))()).rejects.toThrow(TicketError);
      }
      expect(changed).toHaveBeenCalledTimes(2);
      expect(lost).not.toHaveBeenCalled();
    } finally {
      stop();
    }
  });

  it("reads a ticket's holder from its claims, and nothing from a token that is not a JWT saying it", () => {
    expect(ticketHolder(tokenOf({ ...me, role: "customer_viewer" }))).toEqual(me);
    for (const token of ["t", "a.!!!.c", tokenOf({ tenant_id: "acme" }), `x.${btoa("[1]")}.y`]) expect(ticketHolder(token)).toBeNull();
  });
});

describe("restFallback", () => {
  const requested: string[] = [];
  const bodies: Record<string, unknown> = {
    "/api/v2/fleet": { type: "fleet", tenant_id: "acme", seq: 0, ts: "2026-11-22T10:00:00Z", counts: { total: 0, online: 0, stale: 0, offline: 0 }, devices: [] },
    "/api/v2/alerts?status=OPEN&limit=1000": { items: Array.from({ length: 150 }, (_, i) => ({ alert_id: 150 - i })), next: null },
    "/api/v2/devices/dev-1": { device_id: "dev-1", latest: { timestamp: "2026-11-22T10:00:00Z", metrics: { temp_c: 20 } } },
    "/api/v2/events?topic=activity&after=41&limit=1000": activityPage([42, 43]),
    "/api/v2/events?topic=tickets&limit=1": { topic: "tickets", events: [{ ...activityEvent(7), topic: "tickets" }], last_seq: 7 },
  };

  /** The alerts snapshot one poll publishes. */
  async function pollAlerts(client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline }), poll = restFallback(() => client)): Promise<AlertsMessage> {
    const published: DataMessage[] = [];
    await poll({ publish: (m) => published.push(m), signal: new AbortController().signal, events: [] });
    const alerts = published.find((m) => m.type === "alerts");
    if (alerts?.type !== "alerts") throw new Error("no alerts published");
    return alerts;
  }

  beforeEach(() => {
    requested.length = 0;
    vi.stubGlobal("fetch", (url: string) => {
      requested.push(url);
      const body = bodies[url];
      return Promise.resolve(body ? new Response(JSON.stringify(body), { status: 200 }) : new Response("{}", { status: 404 }));
    });
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.restoreAllMocks();
  });

  it("publishes the fleet, the open alerts and the newest reading of every watched device as pushes", async () => {
    const client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    client.subscribe({ type: "device", device_id: "dev-1" });
    const published: DataMessage[] = [];
    await restFallback(() => client)({ publish: (m) => published.push(m), signal: new AbortController().signal, events: [] });
    expect(requested.sort()).toEqual(["/api/v2/alerts?status=OPEN&limit=1000", "/api/v2/devices/dev-1", "/api/v2/fleet"]);
    expect(published.map((m) => m.type)).toEqual(["fleet", "alerts", "telemetry"]);
    const alerts = published[1]!;
    expect(alerts.type === "alerts" && [alerts.alerts.length, alerts.total_open, alerts.tenant_id, alerts.seq]).toEqual([100, 150, "acme", 0]);
    expect(published[2]).toMatchObject({ type: "telemetry", device_id: "dev-1", data: { metrics: { temp_c: 20 } } });
  });

  it("orders polled alerts as a pushed snapshot: newest created_at first, then alert_id, descending", async () => {
    const saved = bodies["/api/v2/alerts?status=OPEN&limit=1000"];
    bodies["/api/v2/alerts?status=OPEN&limit=1000"] = {
      items: [
        alert(1, { created_at: "2026-11-22T10:00:00.5Z" }),
        alert(2, { created_at: "2026-11-22T09:00:00Z" }),
        alert(3, { created_at: "2026-11-22T10:00:00.500001Z" }),
        alert(4, { created_at: "2026-11-22T10:00:00.500Z" }),
        alert(5, { created_at: "2026-11-22T09:00:00.000000Z" }),
      ],
      next: null,
    };
    try {
      const alerts = await pollAlerts();
      expect(alerts.alerts.map((a) => a.alert_id)).toEqual([3, 4, 1, 5, 2]);
      expect(alerts.total_open).toBe(5);
    } finally {
      bodies["/api/v2/alerts?status=OPEN&limit=1000"] = saved;
    }
  });

  it("keeps the last pushed total_open when the polled page has more, not a count capped at its size", async () => {
    const saved = bodies["/api/v2/alerts?status=OPEN&limit=1000"];
    bodies["/api/v2/alerts?status=OPEN&limit=1000"] = { items: [alert(3), alert(2), alert(1)], next: "cursor-3" };
    const { client, sockets, connect } = fakeClient();
    try {
      // Without a pushed count, the page is all there is to go by.
      expect((await pollAlerts(client)).total_open).toBe(3);
      await connect({ type: "alerts" });
      sockets.last().push(alertsMessage([alert(9)], 7, 5000));
      const poll = restFallback(() => client);
      const first = await pollAlerts(client, poll);
      expect(first.total_open).toBe(5000);
      // The client's newest snapshot is now the polled one: the pushed count still stands.
      vi.spyOn(client, "latest").mockReturnValue(first);
      expect((await pollAlerts(client, poll)).total_open).toBe(5000);
      // A page without more is the exact count, whatever was pushed before.
      bodies["/api/v2/alerts?status=OPEN&limit=1000"] = { items: [alert(3), alert(2), alert(1)], next: null };
      expect((await pollAlerts(client, poll)).total_open).toBe(3);
    } finally {
      bodies["/api/v2/alerts?status=OPEN&limit=1000"] = saved;
      client.close();
    }
  });

  it("counts a complete polled page by severity, and keeps the pushed counts when the page has more", async () => {
    const saved = bodies["/api/v2/alerts?status=OPEN&limit=1000"];
    const page = [alert(3, { severity: 4 }), alert(2, { severity: 2 }), alert(1, { severity: 4 })];
    bodies["/api/v2/alerts?status=OPEN&limit=1000"] = { items: page, next: null };
    const { client, sockets, connect } = fakeClient();
    try {
      expect((await pollAlerts(client)).open_by_severity).toEqual({ "2": 1, "4": 2 });
      bodies["/api/v2/alerts?status=OPEN&limit=1000"] = { items: page, next: "cursor-1" };
      // Nothing pushed: no counts, and the dashboard counts what is listed.
      expect((await pollAlerts(client)).open_by_severity).toBeUndefined();
      await connect({ type: "alerts" });
      sockets.last().push({ ...alertsMessage([alert(9)], 7, 5000), open_by_severity: { "4": 40, "2": 4960 } });
      expect((await pollAlerts(client)).open_by_severity).toEqual({ "4": 40, "2": 4960 });
    } finally {
      bodies["/api/v2/alerts?status=OPEN&limit=1000"] = saved;
      client.close();
    }
  });

  it("polls the events of every held topic after the client's position, or only the newest without one", async () => {
    const client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    const published: DataMessage[] = [];
    await restFallback(() => client)({
      publish: (m) => published.push(m),
      signal: new AbortController().signal,
      events: [
        { topic: "activity", after: 41 },
        { topic: "tickets", after: null },
      ],
    });
    expect(requested).toContain("/api/v2/events?topic=activity&after=41&limit=1000");
    expect(requested).toContain("/api/v2/events?topic=tickets&limit=1");
    const events = published.filter((m) => m.type === "event").map((m) => `${m.type === "event" ? m.topic : ""}:${m.seq}`);
    expect(events.sort()).toEqual(["activity:42", "activity:43", "tickets:7"]);
  });

  it("publishes the snapshots even when an event poll fails, then fails the poll", async () => {
    const client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    const published: DataMessage[] = [];
    const poll = restFallback(() => client)({ publish: (m) => published.push(m), signal: new AbortController().signal, events: [{ topic: "orders", after: 1 }] });
    await expect(poll).rejects.toThrow("HTTP 404");
    expect(published.map((m) => m.type)).toEqual(["fleet", "alerts"]);
  });

  it("reports a lost session when a poll gets 401", async () => {
    const lost = vi.fn();
    onSessionLost(lost);
    vi.stubGlobal("fetch", () => Promise.resolve(new Response('{"error":{"code":"unauthorized","message":"not logged in"}}', { status: 401 })));
    const client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    await expect(restFallback(() => client)({ publish: () => {}, signal: new AbortController().signal, events: [] })).rejects.toThrow("not logged in");
    expect(lost).toHaveBeenCalled();
    onSessionLost(() => {});
  });
});

describe("checkSessionWhenForbidden", () => {
  const me = { tenant_id: "acme", email: "zoë@acme.example" };

  /** A client closed with 4003 once, with `whoIsIt` answering for the web service. */
  async function forbidden(whoIsIt: () => Promise<typeof me | null>) {
    const { client, sockets, connect } = fakeClient();
    const asked = vi.fn(whoIsIt);
    const stop = checkSessionWhenForbidden(client, me, asked);
    await connect({ type: "alerts" });
    expect(asked).not.toHaveBeenCalled();
    sockets.last().serverClose(4003, "user deleted");
    await settle();
    expect(client.status).toMatchObject({ state: "offline", reason: "forbidden" });
    return { client, asked, stop };
  }

  it("ends a session the web service no longer has, and asks once per refusal", async () => {
    const lost = vi.fn();
    onSessionLost(lost);
    try {
      const { client, asked } = await forbidden(() => Promise.resolve(null));
      expect(asked).toHaveBeenCalledTimes(1);
      expect(lost).toHaveBeenCalledTimes(1);
      client.close();
      await settle();
      expect(asked).toHaveBeenCalledTimes(1);
    } finally {
      onSessionLost(() => {});
    }
  });

  it("asks again, backing off, until the web service answers, then acts on the answer", async () => {
    vi.useFakeTimers();
    const lost = vi.fn();
    onSessionLost(lost);
    try {
      // pulse-web is restarting: the first answers are 503s, then it says there is no session.
      const answers: (() => Promise<typeof me | null>)[] = [
        () => Promise.reject(new Error("HTTP 503")),
        () => Promise.reject(new Error("HTTP 503")),
        () => Promise.resolve(null),
      ];
      const { client, asked } = await forbidden(() => answers.shift()!());
      expect(asked).toHaveBeenCalledTimes(1);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(asked).toHaveBeenCalledTimes(2);
      expect(lost).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(3_000);
      expect(asked).toHaveBeenCalledTimes(3);
      expect(lost).toHaveBeenCalledTimes(1);
      // Answered: asked no more.
      await vi.advanceTimersByTimeAsync(120_000);
      expect(asked).toHaveBeenCalledTimes(3);
      client.close();
    } finally {
      onSessionLost(() => {});
      vi.useRealTimers();
    }
  });

  it("stops asking once the refusal is over (the client was started again), or the check is stopped", async () => {
    vi.useFakeTimers();
    try {
      const { client, asked, stop } = await forbidden(() => Promise.reject(new Error("HTTP 503")));
      await vi.advanceTimersByTimeAsync(2_000);
      expect(asked).toHaveBeenCalledTimes(2);
      // The user's Retry: the refusal is over, and so are its questions.
      client.start();
      await vi.advanceTimersByTimeAsync(120_000);
      expect(asked).toHaveBeenCalledTimes(2);
      client.close();
      // Refused again; then the session ends (its page closes the check with the client).
      const again = await forbidden(() => Promise.reject(new Error("HTTP 503")));
      again.stop();
      await vi.advanceTimersByTimeAsync(120_000);
      expect(again.asked).toHaveBeenCalledTimes(1);
      again.client.close();
      stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("reports another user's session as changed, and leaves the same user's offline", async () => {
    const lost = vi.fn();
    const changed = vi.fn();
    onSessionLost(lost);
    const stop = watchSessionChanges(changed);
    try {
      const other = await forbidden(() => Promise.resolve({ ...me, email: "eve@acme.example" }));
      expect(changed).toHaveBeenCalledTimes(1);
      other.client.close();
      const same = await forbidden(() => Promise.resolve({ ...me }));
      const failing = await forbidden(() => Promise.reject(new Error("down")));
      expect(changed).toHaveBeenCalledTimes(1);
      expect(lost).not.toHaveBeenCalled();
      for (const { client } of [same, failing]) {
        expect(client.status.state).toBe("offline");
        client.close();
      }
    } finally {
      stop();
      onSessionLost(() => {});
    }
  });
});
