import { useState } from "react";

import { notificationsEnabled, notificationsSupported, setNotificationsEnabled } from "../app/notifications.js";

/** Opt-in for desktop notifications of new critical alerts while the tab is hidden. */
export function NotificationToggle() {
  const [enabled, setEnabled] = useState(notificationsEnabled);
  const [busy, setBusy] = useState(false);
  const supported = notificationsSupported();
  const denied = supported && Notification.permission === "denied";
  const title = !supported
    ? "This browser cannot show notifications"
    : denied
      ? "Notifications are blocked for this site in the browser's settings"
      : "Show a desktop notification for each new critical alert while this tab is hidden";
  return (
    <label className="toggle" title={title}>
      <input
        type="checkbox"
        checked={enabled}
        disabled={!supported || denied || busy}
        data-testid="notify-toggle"
        onChange={(event) => {
          const want = event.currentTarget.checked;
          setBusy(true);
          void setNotificationsEnabled(want)
            .then(setEnabled)
            .finally(() => setBusy(false));
        }}
      />
      <span className="toggle__track" aria-hidden="true" />
      <span className="toggle__label">Critical alerts to desktop</span>
    </label>
  );
}
