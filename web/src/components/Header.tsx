import { useSession } from "../app/session.js";
import { ConnectionIndicator } from "./ConnectionIndicator.js";
import { Link } from "./Link.js";
import { Logo } from "./Logo.js";
import { NotificationToggle } from "./NotificationToggle.js";

/** The top bar: product, tenant, connection, notification opt-in, user and logout. */
export function Header() {
  const { me, logout } = useSession();
  return (
    <header className="topbar">
      <Link to="/" className="topbar__brand" title="Fleet overview">
        <Logo />
        <span className="topbar__name">Pulse</span>
      </Link>
      <span className="topbar__tenant" title="Tenant">
        {me.tenant_id}
      </span>
      <ConnectionIndicator />
      <div className="topbar__spacer" />
      <NotificationToggle />
      <span className="topbar__user" title={me.role}>
        {me.email}
      </span>
      <button type="button" className="button button--ghost" onClick={logout} data-testid="logout">
        Log out
      </button>
    </header>
  );
}
