import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { alwaysOnline, PulseClient, type Alert, type Ticket } from "../client/index.js";
import { settle, socketFactory } from "../client/testing/fakes.js";
import { HIGHLIGHT_MS } from "../model/alertsFeed.js";
import { connectionBadge, subscriptionStaleText } from "../model/format.js";
import { alert, alertsMessage, device, fleetMessage } from "../model/testing/fixtures.js";
import { HttpError } from "./api.js";
import { LiveStore } from "./liveStore.js";

describe("LiveStore", () => {
  let client: PulseClient;
  let now: number;
  let critical: Alert[][];
  let store: LiveStore;
  let stop: () => void;

  beforeEach(() => {
    vi.useFakeTimers();
    now = 1_000;
    critical = [];
    client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    store = new LiveStore(client, { now: () => now, onCriticalAlerts: (a) => critical.push(a) });
    stop = store.start();
  });

  afterEach(() => {
    stop();
    vi.useRealTimers();
  });

  it("holds the alerts and fleet channels while started", () => {
    expect(client.channels).toEqual([{ type: "alerts" }, { type: "fleet" }]);
    stop();
    expect(client.channels).toEqual([]);
  });

  it("replaces only the feed that changed and tells its listeners", () => {
    const listener = vi.fn();
    store.subscribe(listener);
    const before = store.getState();
    client.bus.publish("fleet", fleetMessage([device("dev-1")]));
    const after = store.getState();
    expect(listener).toHaveBeenCalledTimes(1);
    expect(after.fleet.message?.counts.total).toBe(1);
    expect(after.alerts).toBe(before.alerts);
    expect(after.connection).toBe(before.connection);
  });

  it("follows the connection state", () => {
    client.bus.publish("connection", { state: "reconnecting", polling: true, since: 5 });
    expect(store.getState().connection).toMatchObject({ state: "reconnecting", polling: true });
  });

  it("ends a highlight when its time is up, by itself", () => {
    client.bus.publish("alerts", alertsMessage([alert(1)], 1));
    client.bus.publish("alerts", alertsMessage([alert(2), alert(1)], 2));
    expect(store.getState().alerts.fresh.has(2)).toBe(true);
    now += HIGHLIGHT_MS;
    vi.advanceTimersByTime(HIGHLIGHT_MS);
    expect(store.getState().alerts.fresh.size).toBe(0);
  });

  it("reports critical alerts as they arrive, not those already there", () => {
    client.bus.publish("alerts", alertsMessage([alert(1, { severity: 5 })], 1));
    expect(critical).toEqual([]);
    client.bus.publish("alerts", alertsMessage([alert(3, { severity: 4 }), alert(2, { severity: 1 }), alert(1, { severity: 5 })], 2));
    expect(critical.map((batch) => batch.map((a) => a.alert_id))).toEqual([[3]]);
  });

  it("announces new critical alerts politely, at most every 10 s, counting what came meanwhile", () => {
    client.bus.publish("alerts", alertsMessage([alert(1, { severity: 1 })], 1));
    expect(store.getState().announcement).toBeNull();
    client.bus.publish("alerts", alertsMessage([alert(2, { severity: 5 }), alert(1, { severity: 1 })], 2));
    expect(store.getState().announcement?.text).toBe("1 new critical alert");
    now += 1_000;
    client.bus.publish("alerts", alertsMessage([alert(3, { severity: 5 }), alert(2, { severity: 5 }), alert(1)], 3));
    now += 1_000;
    client.bus.publish("alerts", alertsMessage([alert(4, { severity: 4 }), alert(3, { severity: 5 }), alert(2, { severity: 5 }), alert(1)], 4));
    expect(store.getState().announcement?.text).toBe("1 new critical alert");
    // Due 10 s after the first announcement (the timer started 1 s after it).
    now += 8_000;
    vi.advanceTimersByTime(8_000);
    expect(store.getState().announcement?.text).toBe("1 new critical alert");
    now += 1_000;
    vi.advanceTimersByTime(1_000);
    expect(store.getState().announcement?.text).toBe("2 new critical alerts");
  });

  it("makes a repeated announcement a new one, so that it is read out again", () => {
    client.bus.publish("alerts", alertsMessage([alert(1, { severity: 1 })], 1));
    client.bus.publish("alerts", alertsMessage([alert(2, { severity: 5 }), alert(1)], 2));
    const first = store.getState().announcement;
    expect(first?.text).toBe("1 new critical alert");
    now += 20_000;
    client.bus.publish("alerts", alertsMessage([alert(3, { severity: 5 }), alert(2), alert(1)], 3));
    const second = store.getState().announcement;
    expect(second?.text).toBe("1 new critical alert");
    expect(second).not.toBe(first);
    expect(second?.id).not.toBe(first?.id);
  });

  it("announces after a stop and start (a remount) as before it", () => {
    client.bus.publish("alerts", alertsMessage([alert(1, { severity: 1 })], 1));
    client.bus.publish("alerts", alertsMessage([alert(2, { severity: 5 }), alert(1)], 2));
    now += 1_000;
    client.bus.publish("alerts", alertsMessage([alert(3, { severity: 5 }), alert(2), alert(1)], 3));
    // A timer is pending for the second one; the store stops and starts again meanwhile.
    stop();
    stop = store.start();
    now += 1_000;
    client.bus.publish("alerts", alertsMessage([alert(4, { severity: 5 }), alert(3), alert(2), alert(1)], 4));
    now += 8_000;
    vi.advanceTimersByTime(8_000);
    expect(store.getState().announcement?.text).toMatch(/new critical alert/);
    expect(store.getState().announcement?.text).not.toBe("1 new critical alert");
  });

  it("shows a push the client refused for its broken envelope in its widget, until the next valid one", () => {
    client.bus.publish("fleet", fleetMessage([device("dev-1")]));
    const refused = "malformed message: fleet: counts is missing";
    client.bus.publish("error", { kind: "malformed_message", message: refused, channel: { type: "fleet" } });
    expect(store.getState().fleet.error).toBe(refused);
    expect(store.getState().fleet.message?.counts.total).toBe(1);
    expect(store.getState().alerts.error).toBeNull();
    client.bus.publish("error", { kind: "malformed_message", message: "alerts: total_open must be an integer", channel: { type: "alerts" } });
    expect(store.getState().alerts.error).toMatch(/total_open/);
    // Errors that name no channel, or are of another kind, leave the widgets alone.
    client.bus.publish("error", { kind: "malformed_message", message: "not json" });
    client.bus.publish("error", { kind: "server_error", message: "no", channel: { type: "fleet" } });
    client.bus.publish("fleet", fleetMessage([device("dev-1"), device("dev-2")]));
    expect(store.getState().fleet.error).toBeNull();
    expect(store.getState().alerts.error).toMatch(/total_open/);
  });

  it("keeps one widget's malformed message away from the others", () => {
    client.bus.publish("fleet", fleetMessage([device("dev-1")]));
    client.bus.publish("alerts", { ...alertsMessage([]), alerts: [{ bad: true }] } as never);
    const state = store.getState();
    expect(state.alerts.error).toMatch(/^alerts\[0\]\./);
    expect(state.fleet.error).toBeNull();
    client.bus.publish("fleet", fleetMessage([device("dev-1"), device("dev-2")]));
    expect(store.getState().fleet.message?.counts.total).toBe(2);
  });
});

describe("LiveStore and the REST fallback", () => {
  afterEach(() => vi.useRealTimers());

  it("says when every poll fails, since when, and how old the data is, and when polls get through again", async () => {
    // Local time, as the badge shows it.
    vi.useFakeTimers({ now: new Date(2026, 10, 22, 10, 0, 0) });
    const sockets = socketFactory();
    const ticket: Ticket = { token: "t", expires_at: Math.floor(Date.now() / 1000) + 3600, gateways: ["ws://gw-a.test/api/v2/ws"] };
    // One ticket, then the ticket endpoint is down with the gateways: the socket stays down.
    const getTicket = vi.fn<() => Promise<Ticket>>().mockResolvedValueOnce(ticket).mockRejectedValue(new Error("HTTP 503"));
    let restDown = false;
    const poll = vi.fn(async () => {
      if (restDown) throw new HttpError(503, "busy");
    });
    const client = new PulseClient({ getTicket, WebSocket: sockets.WebSocket, network: alwaysOnline, poll });
    const store = new LiveStore(client);
    const stop = store.start();
    const badge = () => connectionBadge(store.getState().connection, Date.now(), store.getState().freshness);
    try {
      client.start();
      await settle();
      sockets.last().accept();
      await settle();
      expect(badge().label).toBe("Live");

      // 10:00:10: the gateways go; 5 s later the fallback polls, and gets through.
      await vi.advanceTimersByTimeAsync(10_000);
      sockets.last().serverClose(1006);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(poll).toHaveBeenCalledTimes(1);
      expect(badge().label).toBe("Reconnecting…");
      expect(badge().detail).toContain("Showing data polled over REST");

      // 10:00:45: REST goes too (a VPN drop, a 503). Every poll fails from then on.
      restDown = true;
      await vi.advanceTimersByTimeAsync(30_000);
      await vi.advanceTimersByTimeAsync(30_000);
      expect(poll).toHaveBeenCalledTimes(3);
      expect(client.status).toMatchObject({ state: "reconnecting", polling: true });
      const failing = badge();
      expect(failing.detail).not.toContain("Showing data polled over REST");
      expect(failing.detail).toContain("Polling over REST has failed since 10:00:45 (busy)");
      expect(failing.detail).toContain("The data shown is as of 10:00:15.");
      // On show, beside the label: the data is as of the last poll that got through.
      expect(failing).toMatchObject({ label: "Reconnecting…", tone: "down", fallback: "REST fallback failing since 10:00:45", failing: true, asOf: "as of 10:00:15" });

      // 10:01:45: REST is back; the next poll gets through.
      restDown = false;
      await vi.advanceTimersByTimeAsync(30_000);
      expect(badge()).toMatchObject({ fallback: "REST fallback", failing: false, asOf: "as of 10:01:45" });
    } finally {
      stop();
      client.close();
    }
  });

  it("says on a widget refused for now under a live connection that its REST refresh fails, and since when", () => {
    const client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
    let now = new Date(2026, 10, 22, 10, 0, 0).getTime();
    const store = new LiveStore(client, { now: () => now });
    const stop = store.start();
    const refused = { channel: { type: "events", topic: "activity" }, state: "retrying", error: { code: "unavailable", message: "NATS down" }, since: now } as const;
    const text = () => subscriptionStaleText(refused, store.getState().freshness, 30);
    try {
      client.bus.publish("connection", { state: "live", polling: true, since: now });
      expect(text()).toBe("Not live: unavailable, retrying; refreshed every 30 s");
      now += 30_000;
      client.bus.publish("error", { kind: "poll_failed", message: "fallback poll failed: busy", cause: new HttpError(503, "busy") });
      expect(text()).toBe("Not live: unavailable, retrying; REST refresh failing since 10:00:30");
      expect(connectionBadge(store.getState().connection, now, store.getState().freshness)).toMatchObject({
        label: "Live",
        tone: "live",
        fallback: "REST fallback failing since 10:00:30",
        asOf: null,
      });
      // Once the live connection serves every channel again, nothing is failing.
      client.bus.publish("connection", { state: "live", polling: false, since: now });
      expect(store.getState().freshness).toMatchObject({ failingSince: null, pollError: null });
    } finally {
      stop();
    }
  });
});
