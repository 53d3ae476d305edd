import { useAgo } from "../app/clock.js";
import { dateTime } from "../model/format.js";

/** "10 s ago", kept current; the exact time is in the tooltip. */
export function RelativeTime({ timestamp }: { timestamp: string | null }) {
  const text = useAgo(timestamp);
  if (timestamp === null) return <span className="muted">never</span>;
  return (
    <time dateTime={timestamp} title={dateTime(timestamp)}>
      {text}
    </time>
  );
}
