/** A widget's error (or the page's): what failed, why, and a retry when one helps. */
export function ErrorCard({ title, message, onRetry, testId = "error-card" }: { title: string; message: string; onRetry?: () => void; testId?: string }) {
  return (
    <div className="error-card" role="alert" data-testid={testId}>
      <div className="error-card__title">{title}</div>
      <p className="error-card__message">{message}</p>
      <RetryButton onRetry={onRetry} />
    </div>
  );
}

/** The retry a widget's error or stale notice offers, when it has one. */
export function RetryButton({ onRetry }: { onRetry?: () => void }) {
  if (!onRetry) return null;
  return (
    <button type="button" className="button button--small" onClick={onRetry}>
      Retry
    </button>
  );
}
