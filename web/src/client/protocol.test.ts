import { describe, expect, it } from "vitest";

import {
  channelTopic,
  encodeRequest,
  eventsResetTopic,
  isValidId,
  messageTopic,
  parseServerFrame,
  subscribeRequest,
  unsubscribeRequest,
  withToken,
} from "./protocol.js";
import type { Channel } from "./types.js";

const ts = "2026-11-22T10:00:00Z";

describe("requests", () => {
  it("encodes subscribe and unsubscribe for every channel", () => {
    const cases: [Channel, string][] = [
      [{ type: "alerts" }, '{"action":"subscribe","type":"alerts"}'],
      [{ type: "fleet" }, '{"action":"subscribe","type":"fleet"}'],
      [{ type: "device", device_id: "dev-0001" }, '{"action":"subscribe","type":"device","device_id":"dev-0001"}'],
      [{ type: "events", topic: "tickets" }, '{"action":"subscribe","type":"events","topic":"tickets"}'],
    ];
    for (const [channel, want] of cases) {
      expect(encodeRequest(subscribeRequest(channel))).toBe(want);
      expect(encodeRequest(unsubscribeRequest(channel))).toBe(want.replace('"subscribe"', '"unsubscribe"'));
    }
  });

  it("adds since to an events subscribe only", () => {
    expect(encodeRequest(subscribeRequest({ type: "events", topic: "tickets" }, 41))).toBe(
      '{"action":"subscribe","type":"events","topic":"tickets","since":41}',
    );
    expect(encodeRequest(subscribeRequest({ type: "events", topic: "tickets" }, 0))).toBe(
      '{"action":"subscribe","type":"events","topic":"tickets","since":0}',
    );
    expect(encodeRequest(subscribeRequest({ type: "events", topic: "tickets" }))).toBe(
      '{"action":"subscribe","type":"events","topic":"tickets"}',
    );
    expect(encodeRequest(subscribeRequest({ type: "alerts" }, 41))).toBe('{"action":"subscribe","type":"alerts"}');
  });

  it("sends only the fields the protocol knows", () => {
    const channel = { type: "alerts", extra: 1 } as unknown as Channel;
    expect(encodeRequest(subscribeRequest(channel))).toBe('{"action":"subscribe","type":"alerts"}');
  });

  it("encodes ping and auth", () => {
    expect(encodeRequest({ action: "ping" })).toBe('{"action":"ping"}');
    expect(encodeRequest({ action: "auth", token: "abc" })).toBe('{"action":"auth","token":"abc"}');
  });
});

describe("topics", () => {
  it("maps channels and messages to the same bus topics", () => {
    expect(channelTopic({ type: "alerts" })).toBe("alerts");
    expect(channelTopic({ type: "fleet" })).toBe("fleet");
    expect(channelTopic({ type: "device", device_id: "dev-1" })).toBe("telemetry:dev-1");
    expect(channelTopic({ type: "events", topic: "tickets" })).toBe("events:tickets");
    expect(eventsResetTopic("tickets")).toBe("events_reset:tickets");
    expect(
      messageTopic({ type: "telemetry", tenant_id: "a", device_id: "dev-1", seq: 1, data: { timestamp: ts, metrics: {} } }),
    ).toBe("telemetry:dev-1");
    expect(
      messageTopic({ type: "event", tenant_id: "a", topic: "tickets", event: "x", seq: 1, ts, payload: null }),
    ).toBe("events:tickets");
  });

  it("refuses ids that break the id rule", () => {
    for (const bad of ["", ">", "*", "a.b", "a b", "dévice", "x".repeat(65)]) {
      expect(isValidId(bad)).toBe(false);
      expect(() => channelTopic({ type: "device", device_id: bad })).toThrow(TypeError);
      expect(() => channelTopic({ type: "events", topic: bad })).toThrow(TypeError);
    }
    expect(isValidId("A-Z_a-z_0-9")).toBe(true);
    expect(isValidId("x".repeat(64))).toBe(true);
    expect(() => channelTopic({ type: "everything" } as unknown as Channel)).toThrow(TypeError);
  });
});

describe("withToken", () => {
  it("puts the encoded token in the query", () => {
    expect(withToken("ws://h:8081/api/v2/ws", "a.b+c/d=")).toBe("ws://h:8081/api/v2/ws?token=a.b%2Bc%2Fd%3D");
    expect(withToken("wss://h/api/v2/ws?x=1", "t")).toBe("wss://h/api/v2/ws?x=1&token=t");
  });
});

describe("parseServerFrame", () => {
  it("recognises every data message", () => {
    const frames = [
      { type: "alerts", tenant_id: "acme", seq: 1, ts, alerts: [], total_open: 0 },
      { type: "fleet", tenant_id: "acme", seq: 2, ts, counts: { total: 0, online: 0, stale: 0, offline: 0 }, devices: [] },
      { type: "telemetry", tenant_id: "acme", device_id: "dev-1", seq: 3, data: { timestamp: ts, metrics: { t: 1 } } },
      { type: "event", tenant_id: "acme", topic: "tickets", event: "ticket:update", seq: 4, ts, payload: { id: 5 } },
    ];
    for (const f of frames) {
      const parsed = parseServerFrame(JSON.stringify({ ...f, added_later: true }));
      expect(parsed.kind).toBe("data");
      if (parsed.kind === "data") expect(parsed.message.seq).toBe(f.seq);
    }
  });

  it("recognises every reply", () => {
    expect(parseServerFrame('{"type":"subscribed","channel":"alerts"}')).toEqual({
      kind: "reply",
      reply: { type: "subscribed", channel: "alerts" },
    });
    expect(parseServerFrame('{"type":"unsubscribed","channel":"device","device_id":"dev-1"}')).toEqual({
      kind: "reply",
      reply: { type: "unsubscribed", channel: "device", device_id: "dev-1" },
    });
    expect(parseServerFrame('{"type":"subscribed","channel":"events","topic":"tickets"}')).toEqual({
      kind: "reply",
      reply: { type: "subscribed", channel: "events", topic: "tickets" },
    });
    expect(parseServerFrame('{"type":"pong"}')).toEqual({ kind: "reply", reply: { type: "pong" } });
    expect(parseServerFrame('{"type":"authenticated","exp":1795341660}')).toEqual({
      kind: "reply",
      reply: { type: "authenticated", exp: 1795341660 },
    });
    expect(parseServerFrame('{"type":"error","code":"invalid_id","message":"bad"}')).toEqual({
      kind: "reply",
      reply: { type: "error", code: "invalid_id", message: "bad" },
    });
  });

  it("reads the seq of an events subscription, and only there", () => {
    expect(parseServerFrame('{"type":"subscribed","channel":"events","topic":"tickets","seq":41}')).toEqual({
      kind: "reply",
      reply: { type: "subscribed", channel: "events", topic: "tickets", seq: 41 },
    });
    expect(parseServerFrame('{"type":"subscribed","channel":"events","topic":"tickets","seq":null}')).toEqual({
      kind: "reply",
      reply: { type: "subscribed", channel: "events", topic: "tickets" },
    });
    expect(parseServerFrame('{"type":"subscribed","channel":"alerts","seq":41}')).toEqual({
      kind: "reply",
      reply: { type: "subscribed", channel: "alerts" },
    });
  });

  it("recognises events_reset with or without oldest", () => {
    expect(parseServerFrame('{"type":"events_reset","topic":"tickets","oldest":57,"reason":"expired"}')).toEqual({
      kind: "reply",
      reply: { type: "events_reset", topic: "tickets", oldest: 57, reason: "expired" },
    });
    expect(parseServerFrame('{"type":"events_reset","topic":"tickets","oldest":null,"reason":"unavailable"}')).toEqual({
      kind: "reply",
      reply: { type: "events_reset", topic: "tickets", oldest: null, reason: "unavailable" },
    });
    expect(parseServerFrame('{"type":"events_reset","topic":"tickets","reason":"a_later_reason"}')).toEqual({
      kind: "reply",
      reply: { type: "events_reset", topic: "tickets", oldest: null, reason: "a_later_reason" },
    });
  });

  it("reads the channel an error names, and keeps the error when that channel is bad", () => {
    expect(
      parseServerFrame('{"type":"error","code":"invalid_since","message":"bad since","channel":"events","topic":"tickets"}'),
    ).toEqual({
      kind: "reply",
      reply: { type: "error", code: "invalid_since", message: "bad since", channel: { channel: "events", topic: "tickets" } },
    });
    expect(parseServerFrame('{"type":"error","code":"unavailable","message":"","channel":"device","device_id":"a.b"}')).toEqual({
      kind: "reply",
      reply: { type: "error", code: "unavailable", message: "" },
    });
  });

  it("keeps an unknown type apart from malformed frames", () => {
    const parsed = parseServerFrame('{"type":"presence","who":1}');
    expect(parsed).toEqual({ kind: "unknown", type: "presence", value: { type: "presence", who: 1 } });
  });

  it("checks the envelope of a push against the contract, and leaves list items to the widget", () => {
    const alert = { alert_id: 1, device_id: "d", site_id: "s", alert_type: "t", severity: 4, summary: "x", status: "OPEN", created_at: ts };
    const alerts = (items: unknown[], patch: Record<string, unknown> = {}) =>
      JSON.stringify({ type: "alerts", tenant_id: "acme", seq: 1, ts, alerts: items, total_open: items.length, ...patch });
    expect(parseServerFrame(alerts([alert])).kind).toBe("data");
    // A broken item reaches the widget, which shows an error card in its place.
    expect(parseServerFrame(alerts([{ ...alert, severity: "high" }])).kind).toBe("data");
    expect(parseServerFrame(alerts([], { ts: "yesterday" }))).toEqual({ kind: "malformed", reason: "alerts: ts must be an RFC 3339 timestamp", topic: "alerts" });
    expect(parseServerFrame(alerts([], { tenant_id: "a.b" })).kind).toBe("malformed");
    expect(parseServerFrame(alerts([], { total_open: -1 }))).toEqual({ kind: "malformed", reason: "alerts: total_open must be ≥ 0", topic: "alerts" });
    // The topic is named when the id can be read, whatever else is broken.
    const telemetry = (deviceId: unknown) => JSON.stringify({ type: "telemetry", tenant_id: "acme", device_id: deviceId, seq: 1, ts });
    expect(parseServerFrame(telemetry("dev-1"))).toMatchObject({ kind: "malformed", topic: "telemetry:dev-1" });
    expect(parseServerFrame(telemetry(">"))).toEqual({ kind: "malformed", reason: expect.any(String) as string, topic: undefined });
    expect(parseServerFrame(JSON.stringify({ type: "event", topic: "tickets", seq: "x" }))).toMatchObject({ topic: "events:tickets" });
    // A seq above 2^53 is an integer to the schema, but not one a JavaScript number holds.
    expect(parseServerFrame(alerts([]).replace('"seq":1', '"seq":9007199254740993')).kind).toBe("malformed");
  });

  it("accepts fields added within v1", () => {
    const frame = { type: "fleet", tenant_id: "acme", seq: 2, ts, counts: { total: 0, online: 0, stale: 0, offline: 0, retired: 4 }, devices: [], region: "eu" };
    expect(parseServerFrame(JSON.stringify(frame))).toEqual({ kind: "data", message: frame });
  });

  it("never throws on bad input", () => {
    const bad: unknown[] = [
      "",
      "{",
      "not json",
      "[1,2]",
      "null",
      "42",
      '"alerts"',
      "{}",
      '{"type":5}',
      '{"type":"alerts","tenant_id":"acme","seq":-1,"ts":"x","alerts":[],"total_open":0}',
      '{"type":"alerts","tenant_id":"acme","seq":1.5,"ts":"x","alerts":[],"total_open":0}',
      '{"type":"alerts","tenant_id":"acme","seq":"1","ts":"x","alerts":[],"total_open":0}',
      '{"type":"alerts","tenant_id":"acme","seq":1,"ts":"x","alerts":{},"total_open":0}',
      '{"type":"fleet","tenant_id":"acme","seq":1,"ts":"x","counts":{"total":1},"devices":[]}',
      '{"type":"telemetry","tenant_id":"acme","seq":1,"device_id":"a.>","data":{"metrics":{}}}',
      '{"type":"telemetry","tenant_id":"acme","seq":1,"device_id":"d","data":null}',
      '{"type":"event","tenant_id":"acme","seq":1,"topic":"t","ts":"x"}',
      '{"type":"event","seq":1,"topic":"t","event":"e"}',
      '{"type":"subscribed","channel":"device"}',
      '{"type":"subscribed","channel":"nope"}',
      '{"type":"error","message":"no code"}',
      '{"type":"authenticated","exp":"soon"}',
      '{"type":"subscribed","channel":"events","topic":"tickets","seq":-1}',
      '{"type":"subscribed","channel":"events","topic":"tickets","seq":"41"}',
      '{"type":"events_reset","oldest":1,"reason":"expired"}',
      '{"type":"events_reset","topic":"a.>","oldest":1,"reason":"expired"}',
      '{"type":"events_reset","topic":"t","oldest":1.5,"reason":"expired"}',
      '{"type":"events_reset","topic":"t","oldest":"57","reason":"expired"}',
      '{"type":"events_reset","topic":"t","oldest":57}',
      new ArrayBuffer(4),
      undefined,
    ];
    for (const frame of bad) {
      const parsed = parseServerFrame(frame);
      expect(parsed.kind, String(frame)).toBe("malformed");
    }
  });
});
