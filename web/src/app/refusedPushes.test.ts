import { describe, expect, it, vi } from "vitest";

import { fakeClient } from "../client/testing/fakes.js";
import { watchRefusedPushes } from "./refusedPushes.js";

describe("watchRefusedPushes", () => {
  it("tells the widget of its channel about a push the client refused, and no other widget", async () => {
    const { client, sockets, connect } = fakeClient();
    const refused = vi.fn();
    const stop = watchRefusedPushes(client, { type: "device", device_id: "dev-1" }, refused);
    await connect({ type: "device", device_id: "dev-1" }, { type: "device", device_id: "dev-2" }, { type: "events", topic: "activity" });
    // Envelopes the client refuses before any `watch` sees them: telemetry without `data`, an
    // event without its `event` name.
    const broken = (deviceId: string) => ({ type: "telemetry", tenant_id: "acme", device_id: deviceId, seq: 4, ts: "2026-11-22T10:00:00Z" });
    sockets.last().push(broken("dev-2"));
    sockets.last().push({ type: "event", tenant_id: "acme", topic: "activity", seq: 3 });
    expect(refused).not.toHaveBeenCalled();
    sockets.last().push(broken("dev-1"));
    expect(refused).toHaveBeenCalledTimes(1);
    expect(refused.mock.calls[0]?.[0]).toMatch(/^malformed message: telemetry: /);
    stop();
    sockets.last().push(broken("dev-1"));
    expect(refused).toHaveBeenCalledTimes(1);
    client.close();
  });
});
