import { useNow } from "../app/clock.js";
import { ago, dateTime } from "../model/format.js";

/** "12 s ago", kept current; the exact time is in the tooltip. */
export function RelativeTime({ timestamp }: { timestamp: string | null }) {
  const now = useNow();
  if (timestamp === null) return <span className="muted">never</span>;
  return (
    <time dateTime={timestamp} title={dateTime(timestamp)}>
      {ago(timestamp, now)}
    </time>
  );
}
