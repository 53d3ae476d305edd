import { RetryButton } from "./ErrorCard.js";

/**
 * A widget's data may be out of date: a reload failed, and what was loaded before stays on show
 * (with live updates still merging in) rather than being swapped for an error card. Polite, not
 * an alert: nothing the user sees was lost.
 */
export function StaleNotice({ message, onRetry }: { message: string; onRetry?: () => void }) {
  return (
    <div className="stale-notice" role="status" data-testid="stale-notice">
      <span className="stale-notice__message">{message}</span>
      <RetryButton onRetry={onRetry} />
    </div>
  );
}
