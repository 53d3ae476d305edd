import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { emptyActivityFeed, reduceActivity, type ActivityAction, type ActivityFeed } from "../model/activityFeed.js";
import { activityPage } from "../model/testing/fixtures.js";
import { checkEventsPage } from "../model/validate.js";
import { ActivityView } from "./RecentActivity.js";

function page(seqs: number[]) {
  const checked = checkEventsPage(activityPage(seqs), "activity");
  if (!checked.ok) throw new Error(checked.error);
  return checked.value;
}

const run = (...actions: ActivityAction[]) => actions.reduce(reduceActivity, emptyActivityFeed);
const render = (feed: ActivityFeed) => renderToStaticMarkup(<ActivityView feed={{ ...feed, retry: () => {} }} />);

describe("ActivityView", () => {
  it("announces no count at every event: its meta is not a live region", () => {
    const html = render(run({ type: "loaded", request: 1, page: page([1, 2]) }));
    expect(html).toContain("newest 2");
    expect(html).not.toContain("aria-live");
  });

  it("shows a failed first load in place of the list, with a retry", () => {
    const html = render(run({ type: "load-failed", request: 1, error: "HTTP 502" }));
    expect(html).toContain("Could not load recent activity");
    expect(html).toContain('data-testid="error-card"');
    expect(html).toContain(">Retry</button>");
    expect(html).not.toContain("activity-list");
  });

  it("keeps the entries when a reload after a reset fails, and says they may be incomplete", () => {
    const feed = run({ type: "loaded", request: 1, page: page([1, 2]) }, { type: "reset" }, { type: "load-failed", request: 2, error: "HTTP 502" });
    const html = render(feed);
    expect(html).toContain('data-testid="activity-list"');
    expect(html.match(/data-seq=/g)).toHaveLength(2);
    expect(html).not.toContain('data-testid="error-card"');
    expect(html).toContain('data-testid="stale-notice"');
    expect(html).toContain("Could not reload recent activity: HTTP 502.");
    expect(html).toContain(">Retry</button>");
  });

  it("drops the notice once a later load succeeds", () => {
    const feed = run(
      { type: "loaded", request: 1, page: page([1, 2]) },
      { type: "reset" },
      { type: "load-failed", request: 2, error: "HTTP 502" },
      // The retry timer's load: while a load error stands, a reset waits for it.
      { type: "retry" },
      { type: "loaded", request: 3, page: page([1, 2, 3]) },
    );
    const html = render(feed);
    expect(html).not.toContain("stale-notice");
    expect(html.match(/data-seq=/g)).toHaveLength(3);
  });
});
