import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { alwaysOnline, PulseClient } from "../client/index.js";
import { fakeClient, settle } from "../client/testing/fakes.js";
import type { ActivityAction } from "../model/activityFeed.js";
import { activityPage } from "../model/testing/fixtures.js";
import { ACTIVITY_URL, loadActivity, watchActivitySubscribed } from "./useActivity.js";

describe("loadActivity", () => {
  let body: unknown;
  let status: number;
  const requested: string[] = [];
  let client: PulseClient;

  beforeEach(() => {
    body = activityPage([1, 2, 3]);
    status = 200;
    requested.length = 0;
    vi.stubGlobal("fetch", (url: string) => {
      requested.push(url);
      return Promise.resolve(new Response(JSON.stringify(body), { status }));
    });
    client = new PulseClient({ getTicket: () => new Promise(() => {}), network: alwaysOnline });
  });
  afterEach(() => vi.unstubAllGlobals());

  async function load(signal = new AbortController().signal): Promise<ActivityAction[]> {
    const actions: ActivityAction[] = [];
    await loadActivity(client, 7, signal, (a) => actions.push(a));
    return actions;
  }

  it("reads the newest rows of the activity topic", async () => {
    const actions = await load();
    expect(requested).toEqual(["/api/v2/events?topic=activity&limit=50"]);
    expect(ACTIVITY_URL).toBe("/api/v2/events?topic=activity&limit=50");
    expect(actions).toHaveLength(1);
    expect(actions[0]).toMatchObject({ type: "loaded", request: 7, page: { lastSeq: 3 } });
  });

  it("then tells where the client stands on the topic", async () => {
    const fake = fakeClient();
    client = fake.client;
    await fake.connect({ type: "events", topic: "activity" });
    fake.sockets.last().push({ type: "subscribed", channel: "events", topic: "activity", seq: 9 });
    const actions = await load();
    expect(actions.map((a) => a.type)).toEqual(["loaded", "client-position"]);
    expect(actions[1]).toEqual({ type: "client-position", request: 7, position: 9 });
    client.close();
  });

  it("reports an error answer and a malformed body as a failed load", async () => {
    status = 502;
    body = { error: { code: "unavailable", message: "database down" } };
    expect(await load()).toEqual([{ type: "load-failed", request: 7, error: "database down" }]);
    status = 200;
    body = { topic: "activity", events: "none", last_seq: 1 };
    expect(await load()).toEqual([{ type: "load-failed", request: 7, error: "malformed answer: events must be an array" }]);
  });

  it("passes on the wait a busy server asked for, for the retry's delay", async () => {
    vi.stubGlobal("fetch", () => Promise.resolve(Response.json({ error: { code: "busy", message: "busy" } }, { status: 503, headers: { "Retry-After": "20" } })));
    expect(await load()).toEqual([{ type: "load-failed", request: 7, error: "busy", retryAfterMs: 20_000 }]);
  });

  it("says nothing when aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    vi.stubGlobal("fetch", () => Promise.reject(new DOMException("aborted", "AbortError")));
    expect(await load(controller.signal)).toEqual([]);
  });
});

describe("watchActivitySubscribed", () => {
  it("tells the client's position each time the gateway confirms the activity topic, baseline included", async () => {
    const { client, sockets, connect } = fakeClient();
    const positions: number[] = [];
    const stop = watchActivitySubscribed(client, (p) => positions.push(p));
    await connect({ type: "events", topic: "activity" }, { type: "events", topic: "tickets" });
    sockets.last().push({ type: "subscribed", channel: "events", topic: "tickets", seq: 3 });
    sockets.last().push({ type: "subscribed", channel: "events", topic: "activity", seq: 9 });
    await settle();
    expect(positions).toEqual([9]);
    stop();
    sockets.last().push({ type: "subscribed", channel: "events", topic: "activity", seq: 9 });
    await settle();
    expect(positions).toEqual([9]);
    client.close();
  });
});
