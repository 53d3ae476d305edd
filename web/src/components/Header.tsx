import { useState } from "react";

import { useSession } from "../app/session.js";
import { ConnectionIndicator } from "./ConnectionIndicator.js";
import { Link } from "./Link.js";
import { Logo } from "./Logo.js";
import { NotificationToggle } from "./NotificationToggle.js";

/** The top bar: product, tenant, connection, notification opt-in, user, logout here or everywhere. */
export function Header() {
  const { me, logout } = useSession();
  // Which logout failed, and why: the retry is offered on that button.
  const [failure, setFailure] = useState<{ everywhere: boolean; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const onLogout = (everywhere: boolean) => {
    setBusy(true);
    setFailure(null);
    logout({ everywhere }).catch((error: unknown) => {
      setFailure({ everywhere, message: error instanceof Error ? error.message : String(error) });
      setBusy(false);
    });
  };
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
      {failure && (
        <span className="topbar__error" role="alert" data-testid="logout-error">
          {failure.everywhere ? "Not logged out everywhere" : "Not logged out"}: {failure.message}
        </span>
      )}
      <button type="button" className="button button--ghost" onClick={() => onLogout(false)} disabled={busy} data-testid="logout">
        {failure && !failure.everywhere ? "Try logging out again" : "Log out"}
      </button>
      <button
        type="button"
        className="button button--ghost"
        onClick={() => onLogout(true)}
        disabled={busy}
        title="End every session of this user, on every browser and device"
        data-testid="logout-everywhere"
      >
        {failure?.everywhere ? "Try logging out everywhere again" : "Log out everywhere"}
      </button>
    </header>
  );
}
