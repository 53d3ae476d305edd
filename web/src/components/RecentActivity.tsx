import { useActivity } from "../app/useActivity.js";
import type { Channel } from "../client/index.js";
import { ACTIVITY_ROWS, ACTIVITY_TOPIC, type ActivityFeed } from "../model/activityFeed.js";
import { ActivityItem } from "./ActivityItem.js";
import { ErrorCard } from "./ErrorCard.js";
import { StaleNotice } from "./StaleNotice.js";
import { Widget } from "./Widget.js";

const ACTIVITY: Channel = { type: "events", topic: ACTIVITY_TOPIC };

/** What happened to the tenant's alerts, newest first: loaded over REST, then live. */
export function RecentActivity() {
  return <ActivityView feed={useActivity()} channel={ACTIVITY} />;
}

/**
 * The activity widget for `feed`. A failed load takes the list's place only while nothing was
 * loaded: a reload that fails (after missed events) keeps the entries, live ones still arriving,
 * and says newer ones may be missing until a later load succeeds. With `channel`, it says when
 * the live events are not coming.
 */
export function ActivityView({ feed, channel }: { feed: ActivityFeed & { retry: () => void }; channel?: Channel }) {
  const refreshing = feed.loading && feed.known !== null;
  const retry = feed.loading ? undefined : feed.retry;
  const actions = (
    // Not a live region: "newest 3", "newest 4"… would be read out at every event.
    <span className="widget__meta" data-testid="activity-meta">
      {refreshing ? "Refreshing…" : feed.known !== null ? `newest ${Math.min(feed.entries.length, ACTIVITY_ROWS)}` : ""}
    </span>
  );
  return (
    <Widget title="Recent activity" testId="activity-widget" actions={actions} className="widget--activity" channel={channel}>
      {feed.eventError && <ErrorCard title="A malformed activity event was ignored" message={feed.eventError} />}
      {feed.loadError && feed.known !== null && (
        <StaleNotice message={`Could not reload recent activity: ${feed.loadError}. Some entries may be missing.`} onRetry={retry} />
      )}
      {feed.known === null ? (
        feed.loadError ? (
          <ErrorCard title="Could not load recent activity" message={feed.loadError} onRetry={retry} />
        ) : (
          <p className="placeholder">Loading recent activity…</p>
        )
      ) : feed.entries.length === 0 ? (
        <p className="placeholder">No activity yet.</p>
      ) : (
        <div className="activity-scroll">
          <ol className="activity" aria-label="Recent activity, newest first" data-testid="activity-list">
            {feed.entries.map((entry) => (
              <ActivityItem key={entry.seq} entry={entry} />
            ))}
          </ol>
        </div>
      )}
    </Widget>
  );
}
