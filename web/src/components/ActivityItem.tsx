import { memo } from "react";

import { clockTime, dateTime } from "../model/format.js";
import type { ActivityEntry } from "../model/validate.js";
import { Link } from "./Link.js";

/** Words for the events the database emits; any other event is shown by its name. */
const EVENT_LABEL: Record<string, string> = {
  "alert:opened": "Alert opened",
  "alert:acknowledged": "Alert acknowledged",
  "alert:closed": "Alert closed",
};

/** The tone of an event's label: what it did to the alert. */
function tone(event: string): "opened" | "acknowledged" | "closed" | "other" {
  switch (event) {
    case "alert:opened":
      return "opened";
    case "alert:acknowledged":
      return "acknowledged";
    case "alert:closed":
      return "closed";
    default:
      return "other";
  }
}

/** One entry of the activity list: time, event, device and summary, every field as text. */
export const ActivityItem = memo(function ActivityItem({ entry }: { entry: ActivityEntry }) {
  return (
    <li className="activity__item" data-seq={entry.seq} data-event={entry.event}>
      <time className="activity__time" dateTime={entry.ts} title={dateTime(entry.ts)}>
        {clockTime(entry.at)}
      </time>
      <span className={`activity__event activity__event--${tone(entry.event)}`} title={entry.event} data-testid="activity-event">
        {EVENT_LABEL[entry.event] ?? entry.event}
      </span>
      <span className="activity__device cell-mono">
        {entry.deviceId === null ? <span className="muted">—</span> : <Link to={`/devices/${encodeURIComponent(entry.deviceId)}`}>{entry.deviceId}</Link>}
      </span>
      <span className="activity__summary" title={entry.summary ?? undefined} data-testid="activity-summary">
        {entry.summary ?? ""}
      </span>
    </li>
  );
});
