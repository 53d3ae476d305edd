import { describe, expect, it } from "vitest";

import { emptyFleetFeed, filterDevices, findDevice, reduceFleet } from "./fleetFeed.js";
import { device, fleetMessage } from "./testing/fixtures.js";

describe("reduceFleet", () => {
  it("takes a valid snapshot and keeps it through a malformed one", () => {
    const feed = reduceFleet(emptyFleetFeed, fleetMessage([device("dev-1")]));
    expect(feed.message?.counts.total).toBe(1);
    const broken = reduceFleet(feed, { ...fleetMessage([]), devices: "none" });
    expect(broken.error).toBe("devices must be an array");
    expect(broken.message).toBe(feed.message);
    expect(reduceFleet(broken, fleetMessage([device("dev-1"), device("dev-2")])).error).toBeNull();
  });

  it("keeps the objects of devices that did not change, and the list when none did", () => {
    const first = reduceFleet(emptyFleetFeed, fleetMessage([device("dev-1"), device("dev-2"), device("dev-3")], 1));
    const [d1, d2, d3] = first.message!.devices;
    const second = reduceFleet(first, fleetMessage([device("dev-1"), device("dev-2", { battery_pct: 12 }), device("dev-3")], 2));
    const [e1, e2, e3] = second.message!.devices;
    expect(e1).toBe(d1);
    expect(e2).not.toBe(d2);
    expect(e2?.battery_pct).toBe(12);
    expect(e3).toBe(d3);
    const third = reduceFleet(second, fleetMessage([device("dev-1"), device("dev-2", { battery_pct: 12 }), device("dev-3")], 3));
    expect(third.message?.seq).toBe(3);
    expect(third.message?.devices).toBe(second.message?.devices);
  });

  it("finds a device of the snapshot", () => {
    const feed = reduceFleet(emptyFleetFeed, fleetMessage([device("dev-1"), device("dev-2", { status: "STALE" })]));
    expect(findDevice(feed, "dev-2")?.status).toBe("STALE");
    expect(findDevice(feed, "dev-9")).toBeUndefined();
    expect(findDevice(emptyFleetFeed, "dev-1")).toBeUndefined();
  });
});

describe("filterDevices", () => {
  const devices = [
    device("dev-0003", { status: "OFFLINE", site_id: "site-02" }),
    device("dev-0007", { status: "STALE", site_id: "site-01" }),
    device("dev-0001", { status: "ONLINE", site_id: "site-02" }),
  ];

  it("matches device or site ids, any case, keeping the snapshot's order", () => {
    expect(filterDevices(devices, { text: "", status: null })).toEqual(devices);
    expect(filterDevices(devices, { text: " SITE-02 ", status: null }).map((d) => d.device_id)).toEqual(["dev-0003", "dev-0001"]);
    expect(filterDevices(devices, { text: "0007", status: null }).map((d) => d.device_id)).toEqual(["dev-0007"]);
  });

  it("filters by status, combined with the text", () => {
    expect(filterDevices(devices, { text: "", status: "ONLINE" }).map((d) => d.device_id)).toEqual(["dev-0001"]);
    expect(filterDevices(devices, { text: "site-01", status: "ONLINE" })).toEqual([]);
  });
});
