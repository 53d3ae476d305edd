import { useNow } from "../app/clock.js";
import { useLive } from "../app/session.js";
import { connectionBadge } from "../model/format.js";

/**
 * The header's connection badge: green Live, amber Reconnecting…, red Offline; while REST polling
 * stands in, whether it works or since when it fails; off live, how old the data on show is.
 */
export function ConnectionIndicator() {
  const status = useLive((s) => s.connection);
  const freshness = useLive((s) => s.freshness);
  const now = useNow();
  const badge = connectionBadge(status, now, freshness);
  return (
    <div
      className={`connection connection--${badge.tone}`}
      data-testid="connection"
      data-state={status.state}
      title={badge.detail}
      role="status"
      aria-live="polite"
    >
      <span className="connection__dot" aria-hidden="true" />
      <span className="connection__label">{badge.label}</span>
      {/* The spaces keep the parts apart for a screen reader (and in the text); the flex layout drops them. */}
      {badge.fallback && (
        <>
          {" "}
          <span className={`connection__polling${badge.failing ? " connection__polling--failing" : ""}`} data-testid="connection-fallback">
            {badge.fallback}
          </span>
        </>
      )}
      {badge.asOf && (
        <>
          {" "}
          <span className="connection__asof" data-testid="connection-as-of">
            {badge.asOf}
          </span>
        </>
      )}
    </div>
  );
}
