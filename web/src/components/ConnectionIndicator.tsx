import { useNow } from "../app/clock.js";
import { useLive } from "../app/session.js";
import { connectionBadge } from "../model/format.js";

/** The header's connection badge: green Live, amber Reconnecting…, red Offline. */
export function ConnectionIndicator() {
  const status = useLive((s) => s.connection);
  const now = useNow();
  const badge = connectionBadge(status, now);
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
      {status.polling && <span className="connection__polling">REST fallback</span>}
    </div>
  );
}
