import { Link } from "../components/Link.js";

export function NotFoundPage({ path }: { path: string }) {
  return (
    <div className="page">
      <div className="error-card" role="alert">
        <div className="error-card__title">Page not found</div>
        <p className="error-card__message">Nothing lives at {path}.</p>
        <Link to="/">Go to the fleet overview</Link>
      </div>
    </div>
  );
}
