import { afterEach, describe, expect, it, vi } from "vitest";

import { createPulseBus, TopicBus } from "./bus.js";
import type { AlertsMessage, TelemetryMessage } from "./types.js";

const alerts = (seq: number): AlertsMessage => ({
  type: "alerts",
  tenant_id: "acme",
  seq,
  ts: "2026-11-22T10:00:00Z",
  alerts: [],
  total_open: 0,
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("TopicBus", () => {
  it("delivers to every handler of the topic, in order, and only that topic", () => {
    const bus = createPulseBus();
    const calls: string[] = [];
    bus.on("alerts", (m) => calls.push(`a1:${m.seq}`));
    bus.on("alerts", (m) => calls.push(`a2:${m.seq}`));
    bus.on("fleet", () => calls.push("fleet"));
    expect(bus.publish("alerts", alerts(1))).toBe(2);
    expect(calls).toEqual(["a1:1", "a2:1"]);
  });

  it("keeps telemetry topics of different devices apart", () => {
    const bus = createPulseBus();
    const got: string[] = [];
    bus.on("telemetry:dev-1", (m: TelemetryMessage) => got.push(m.device_id));
    const message: TelemetryMessage = {
      type: "telemetry",
      tenant_id: "acme",
      device_id: "dev-2",
      seq: 1,
      data: { timestamp: "2026-11-22T10:00:00Z", metrics: {} },
    };
    expect(bus.publish("telemetry:dev-2", message)).toBe(0);
    expect(bus.publish("telemetry:dev-1", { ...message, device_id: "dev-1" })).toBe(1);
    expect(got).toEqual(["dev-1"]);
  });

  it("removes a handler with the returned function, once", () => {
    const bus = createPulseBus();
    const a = vi.fn();
    const b = vi.fn();
    const offA = bus.on("alerts", a);
    bus.on("alerts", b);
    offA();
    offA();
    bus.publish("alerts", alerts(1));
    expect(a).not.toHaveBeenCalled();
    expect(b).toHaveBeenCalledTimes(1);
    expect(bus.listenerCount("alerts")).toBe(1);
  });

  it("registers the same function twice as two handlers", () => {
    const bus = createPulseBus();
    const h = vi.fn();
    const off1 = bus.on("alerts", h);
    bus.on("alerts", h);
    bus.publish("alerts", alerts(1));
    expect(h).toHaveBeenCalledTimes(2);
    off1();
    bus.publish("alerts", alerts(2));
    expect(h).toHaveBeenCalledTimes(3);
  });

  it("isolates a throwing handler: the others still run and the error is reported", () => {
    const onHandlerError = vi.fn();
    const bus = createPulseBus({ onHandlerError });
    const before = vi.fn();
    const after = vi.fn();
    const boom = new Error("widget bug");
    bus.on("alerts", before);
    bus.on("alerts", () => {
      throw boom;
    });
    bus.on("alerts", after);
    const message = alerts(3);
    bus.publish("alerts", message);
    expect(before).toHaveBeenCalledWith(message);
    expect(after).toHaveBeenCalledWith(message);
    expect(onHandlerError).toHaveBeenCalledTimes(1);
    expect(onHandlerError).toHaveBeenCalledWith(boom, "alerts", message);
  });

  it("reports each failing handler separately", () => {
    const onHandlerError = vi.fn();
    const bus = createPulseBus({ onHandlerError });
    bus.on("alerts", () => {
      throw new Error("one");
    });
    bus.on("alerts", () => {
      throw new Error("two");
    });
    bus.publish("alerts", alerts(1));
    expect(onHandlerError.mock.calls.map((c) => (c[0] as Error).message)).toEqual(["one", "two"]);
  });

  it("logs handler errors to the console by default, and survives a failing hook", () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const bus = createPulseBus();
    const ok = vi.fn();
    bus.on("alerts", () => {
      throw new Error("x");
    });
    bus.on("alerts", ok);
    bus.publish("alerts", alerts(1));
    expect(log).toHaveBeenCalled();
    expect(ok).toHaveBeenCalledTimes(1);

    bus.onHandlerError = () => {
      throw new Error("hook broke");
    };
    log.mockClear();
    bus.publish("alerts", alerts(2));
    expect(ok).toHaveBeenCalledTimes(2);
    expect(log).toHaveBeenCalledTimes(2);
  });

  it("does not deliver to handlers removed or added during a delivery", () => {
    const bus = new TopicBus<{ t: number }>({ onHandlerError: () => {} });
    const late = vi.fn();
    const removed = vi.fn();
    let offRemoved = (): void => {};
    bus.on("t", () => {
      offRemoved();
      bus.on("t", late);
    });
    offRemoved = bus.on("t", removed);
    bus.publish("t", 1);
    expect(removed).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
    bus.publish("t", 2);
    expect(late).toHaveBeenCalledWith(2);
  });

  it("delivers one payload to one handler with the same isolation", () => {
    const onHandlerError = vi.fn();
    const bus = createPulseBus({ onHandlerError });
    bus.deliver("alerts", () => {
      throw new Error("bad");
    }, alerts(1));
    expect(onHandlerError).toHaveBeenCalledTimes(1);
  });

  it("clear removes every handler", () => {
    const bus = createPulseBus();
    const h = vi.fn();
    const off = bus.on("alerts", h);
    bus.clear();
    bus.publish("alerts", alerts(1));
    off();
    expect(h).not.toHaveBeenCalled();
    expect(bus.listenerCount("alerts")).toBe(0);
  });
});
