import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { emptyFleetFeed, reduceFleet } from "../model/fleetFeed.js";
import { device, fleetMessage } from "../model/testing/fixtures.js";
import { DeviceList } from "./DeviceTable.js";
import { expectBannerAboveTable } from "./testing.js";

const all = { text: "", status: null };

describe("DeviceList", () => {
  it("keeps the last valid devices on show after a malformed update, with the error as a banner above them", () => {
    const valid = reduceFleet(emptyFleetFeed, fleetMessage([device("dev-0001"), device("dev-0002")]));
    const feed = reduceFleet(valid, { ...fleetMessage([]), devices: "none" });
    expect(feed.error).not.toBeNull();
    const html = renderToStaticMarkup(<DeviceList feed={feed} filter={all} />);
    expectBannerAboveTable(html, "devices-table");
    expect(html).toContain('href="/devices/dev-0001"');
    expect(html).toContain('href="/devices/dev-0002"');
  });

  it("shows only the error while no valid update has come", () => {
    const html = renderToStaticMarkup(<DeviceList feed={reduceFleet(emptyFleetFeed, { type: "fleet" })} filter={all} />);
    expect(html).toContain('data-testid="error-card"');
    expect(html).not.toContain("devices-table");
  });
});
