/**
 * Desktop notifications for new critical alerts, while the tab is hidden, when the user opted
 * in. The opt-in is remembered in `localStorage` until the user turns it off or logs out; the
 * browser's permission is asked for when the user turns it on, never before.
 *
 * @packageDocumentation
 */

import type { Alert } from "../client/index.js";

const STORAGE_KEY = "pulse.notify-critical";

/** True when this browser can show notifications at all. */
export function notificationsSupported(): boolean {
  return typeof window !== "undefined" && "Notification" in window;
}

/** Whether the user opted in (and the browser still allows it). */
export function notificationsEnabled(): boolean {
  return notificationsSupported() && Notification.permission === "granted" && localStorage.getItem(STORAGE_KEY) === "on";
}

/** Turns notifications on (asking the browser for permission) or off; returns the new state. */
export async function setNotificationsEnabled(on: boolean): Promise<boolean> {
  if (!on || !notificationsSupported()) {
    localStorage.removeItem(STORAGE_KEY);
    return false;
  }
  const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
  if (permission !== "granted") {
    localStorage.removeItem(STORAGE_KEY);
    return false;
  }
  localStorage.setItem(STORAGE_KEY, "on");
  return true;
}

/** Whether to notify now: opted in, allowed, and the user is not looking at the tab. */
export function shouldNotify(enabled: boolean, tabHidden: boolean): boolean {
  return enabled && tabHidden;
}

/** Title and options of the notification for one alert; all text, nothing interpreted. */
export function alertNotification(alert: Alert): { title: string; options: NotificationOptions } {
  return {
    title: `Critical alert on ${alert.device_id}`,
    options: { body: alert.summary.slice(0, 200), tag: `pulse-alert-${alert.alert_id}` },
  };
}

/** Shows a notification for each alert when {@link shouldNotify} says so. */
export function notifyCriticalAlerts(alerts: Alert[]): void {
  if (!shouldNotify(notificationsEnabled(), document.hidden)) return;
  for (const alert of alerts.slice(0, 3)) {
    const { title, options } = alertNotification(alert);
    try {
      const notification = new Notification(title, options);
      notification.onclick = () => {
        window.focus();
        notification.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker; nothing to do then.
    }
  }
}

/**
 * Forgets the opt-in, on a logout: the next user of a shared browser (a wall screen, a control
 * room PC) would otherwise get pop-ups they never turned on, for alerts of the tenant they log
 * into. The browser's permission stays (it is the site's, and only the browser can take it
 * back); the next user is notified only once they opt in themselves.
 */
export function forgetNotificationsOptIn(): void {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage the browser refuses (a privacy mode) holds no opt-in either.
  }
}
