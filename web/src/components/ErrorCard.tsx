/** A widget's error: what failed, why, and a retry when one helps. */
export function ErrorCard({ title, message, onRetry }: { title: string; message: string; onRetry?: () => void }) {
  return (
    <div className="error-card" role="alert" data-testid="error-card">
      <div className="error-card__title">{title}</div>
      <p className="error-card__message">{message}</p>
      {onRetry && (
        <button type="button" className="button button--small" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}
