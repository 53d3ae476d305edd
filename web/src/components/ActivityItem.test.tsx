import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { checkActivityEvent, type ActivityEntry } from "../model/validate.js";
import { activityEvent } from "../model/testing/fixtures.js";
import { ActivityItem } from "./ActivityItem.js";

const HOSTILE = "<img src=x onerror=alert(1)>";

function entry(...args: Parameters<typeof activityEvent>): ActivityEntry {
  const checked = checkActivityEvent(activityEvent(...args), "activity");
  if (!checked.ok) throw new Error(checked.error);
  return checked.value;
}

const render = (e: ActivityEntry) => renderToStaticMarkup(<ol>{<ActivityItem entry={e} />}</ol>);

describe("ActivityItem", () => {
  it("renders a hostile summary and event name as escaped text", () => {
    const html = render(entry(5, { event: HOSTILE }, { summary: HOSTILE, device_id: "dev-0007" }));
    expect(html).not.toContain("<img");
    expect(html.match(/&lt;img src=x onerror=alert\(1\)&gt;/g)?.length).toBeGreaterThanOrEqual(3); // summary, its title, the event
  });

  it("shows time, event, device link and summary, and names the entry by seq and event", () => {
    const html = render(entry(5, {}, { summary: "Pump pressure low", device_id: "dev-0007" }));
    expect(html).toContain('data-seq="5"');
    expect(html).toContain('data-event="alert:opened"');
    expect(html).toContain("Alert opened");
    expect(html).toContain('href="/devices/dev-0007"');
    expect(html).toContain(">Pump pressure low</span>");
    expect(html).toContain('dateTime="2026-11-22T10:00:02.25Z"');
  });

  it("shows an unknown event by its name and a missing device as a dash", () => {
    const html = render(entry(6, { event: "alert:escalated", payload: null }));
    expect(html).toContain(">alert:escalated</span>");
    expect(html).toContain("activity__event--other");
    expect(html).toContain("—");
  });
});
