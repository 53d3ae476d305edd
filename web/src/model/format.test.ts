import { describe, expect, it } from "vitest";

import type { ConnectionStatus } from "../client/index.js";
import { ago, connectionBadge, fleetShare, metricLabel, metricValue, severity } from "./format.js";

const at = Date.parse("2026-11-22T10:00:00Z");

describe("ago", () => {
  it("says how long ago, coarser as it gets older", () => {
    expect(ago(null, at)).toBe("never");
    expect(ago("2026-11-22T10:00:00Z", at + 500)).toBe("just now");
    expect(ago("2026-11-22T10:00:00Z", at - 5_000)).toBe("just now"); // a clock slightly behind
    expect(ago("2026-11-22T10:00:00Z", at + 3_000)).toBe("just now");
    expect(ago("2026-11-22T10:00:00Z", at + 12_000)).toBe("10 s ago"); // in steps of 5 s
    expect(ago("2026-11-22T10:00:00Z", at + 4 * 60_000)).toBe("4 min ago");
    expect(ago("2026-11-22T10:00:00Z", at + 3 * 3_600_000)).toBe("3 h ago");
    expect(ago("2026-11-22T10:00:00Z", at + 3 * 86_400_000)).toBe("3 d ago");
    expect(ago("garbage", at)).toBe("—");
  });
});

describe("fleetShare", () => {
  it("rounds to whole percent, but never to none of some or all of not all", () => {
    expect(fleetShare(294, 300)).toBe("98 % of fleet");
    expect(fleetShare(1, 300)).toBe("<1 % of fleet");
    expect(fleetShare(2999, 3000)).toBe(">99 % of fleet");
    expect(fleetShare(0, 300)).toBe("0 % of fleet");
    expect(fleetShare(300, 300)).toBe("100 % of fleet");
    expect(fleetShare(0, 0)).toBe("");
  });
});

describe("severity", () => {
  it("maps 4 and above to critical, as the contract's dashboard convention says", () => {
    expect([0, 1, 2, 3, 4, 9].map((s) => severity(s).tone)).toEqual(["info", "warning", "minor", "major", "critical", "critical"]);
  });
});

describe("metrics", () => {
  it("formats values as text", () => {
    expect(metricValue(21.456)).toBe("21.46");
    expect(metricValue(-70)).toBe("-70");
    expect(metricValue("eco")).toBe("eco");
    expect(metricValue(null)).toBe("—");
    expect(metricValue({ a: 1 })).toBe('{"a":1}');
  });

  it("turns unit suffixes into units", () => {
    expect(metricLabel("temp_c")).toBe("temp (°C)");
    expect(metricLabel("humidity_pct")).toBe("humidity (%)");
    expect(metricLabel("signal_dbm")).toBe("signal (dBm)");
    expect(metricLabel("door_state")).toBe("door state");
  });
});

describe("connectionBadge", () => {
  const status = (s: Partial<ConnectionStatus>): ConnectionStatus => ({ state: "live", polling: false, since: 0, ...s });

  it("is green Live, amber Reconnecting…, red Offline", () => {
    expect(connectionBadge(status({ state: "live" }), 0)).toMatchObject({ label: "Live", tone: "live" });
    expect(connectionBadge(status({ state: "connecting" }), 0)).toMatchObject({ label: "Connecting…", tone: "warn" });
    expect(connectionBadge(status({ state: "reconnecting", nextAttemptAt: 2_500 }), 0)).toMatchObject({
      label: "Reconnecting…",
      tone: "warn",
      detail: "The live connection dropped. Next attempt in 3 s.",
    });
    expect(connectionBadge(status({ state: "offline", reason: "network" }), 0)).toMatchObject({ label: "Offline", tone: "down", detail: "The browser reports no network." });
  });

  it("mentions the REST fallback while it runs", () => {
    expect(connectionBadge(status({ state: "reconnecting", polling: true }), 0).detail).toContain("polled over REST");
  });
});
