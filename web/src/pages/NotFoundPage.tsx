import { Link } from "../components/Link.js";

export function NotFoundPage({ path }: { path: string }) {
  return (
    <div className="page">
      <div className="error-card" role="alert">
        <h1 className="error-card__title" tabIndex={-1}>
          Page not found
        </h1>
        <p className="error-card__message">Nothing lives at {path}.</p>
        <Link to="/">Go to the fleet overview</Link>
      </div>
    </div>
  );
}
