import { describe, expect, it } from "vitest";

import type { ConnectionStatus } from "../client/index.js";
import { dataAsOf, fallbackFailing, initialFreshness, reduceFreshness, type Freshness, type FreshnessAction } from "./freshness.js";

const status = (s: Partial<ConnectionStatus>): FreshnessAction => ({ type: "connection", status: { state: "live", polling: false, since: 0, ...s } });
const run = (...actions: FreshnessAction[]): Freshness => actions.reduce(reduceFreshness, initialFreshness);

describe("reduceFreshness", () => {
  it("dates the data off live from when the live connection ended, then from each poll that got through", () => {
    let f = run(status({ state: "live", since: 1_000 }), status({ state: "reconnecting", since: 5_000 }));
    expect(dataAsOf(f)).toBe(5_000);
    f = run(status({ state: "live", since: 1_000 }), status({ state: "reconnecting", since: 5_000 }), status({ state: "reconnecting", polling: true, since: 5_000 }));
    f = reduceFreshness(f, { type: "poll-succeeded", startedAt: 10_000 });
    expect(dataAsOf(f)).toBe(10_000);
    // A poll that got through but started before a newer one did says nothing newer.
    expect(dataAsOf(reduceFreshness(f, { type: "poll-succeeded", startedAt: 9_000 }))).toBe(10_000);
  });

  it("has no age for a page that never was live nor read anything", () => {
    const f = run(status({ state: "connecting", polling: true, since: 0 }), { type: "poll-failed", at: 5_000, error: "busy" });
    expect(dataAsOf(f)).toBeNull();
    expect(fallbackFailing(f)).toBe(true);
  });

  it("fails from the first failure of a row to the next poll that gets through, and forgets it when polling stops", () => {
    let f = run(status({ state: "reconnecting", polling: true, since: 0 }), { type: "poll-failed", at: 5_000, error: "busy" }, { type: "poll-failed", at: 35_000, error: "HTTP 502" });
    expect(f).toMatchObject({ failingSince: 5_000, pollError: "HTTP 502" });
    f = reduceFreshness(f, { type: "poll-succeeded", startedAt: 65_000 });
    expect(f).toMatchObject({ failingSince: null, pollError: null, lastPollAt: 65_000 });
    f = run(status({ state: "reconnecting", polling: true, since: 0 }), { type: "poll-failed", at: 5_000, error: "busy" }, status({ state: "live", since: 6_000 }));
    expect(fallbackFailing(f)).toBe(false);
    expect(f.failingSince).toBeNull();
  });

  it("speaks of this stretch of polling only: a new one forgets the last one's polls", () => {
    const f = run(
      status({ state: "reconnecting", polling: true, since: 0 }),
      { type: "poll-succeeded", startedAt: 5_000 },
      status({ state: "live", since: 6_000 }),
      status({ state: "live", polling: true, since: 6_000 }),
    );
    expect(f.lastPollAt).toBeNull();
  });

  it("returns the state it was given when nothing it follows changed", () => {
    const f = run(status({ state: "reconnecting", since: 5_000 }));
    expect(reduceFreshness(f, status({ state: "reconnecting", since: 5_000, nextAttemptAt: 9_000 }))).toBe(f);
  });
});
