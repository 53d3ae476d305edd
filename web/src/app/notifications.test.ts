import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { alert } from "../model/testing/fixtures.js";
import { alertNotification, forgetNotificationsOptIn, notificationsEnabled, notifyCriticalAlerts, setNotificationsEnabled, shouldNotify } from "./notifications.js";

class FakeNotification {
  static permission: NotificationPermission = "default";
  static requestPermission = vi.fn(async () => FakeNotification.permission);
  static shown: { title: string; options: NotificationOptions | undefined }[] = [];
  onclick: (() => void) | null = null;
  constructor(title: string, options?: NotificationOptions) {
    FakeNotification.shown.push({ title, options });
  }
  close(): void {}
}

describe("desktop notifications", () => {
  let store: Map<string, string>;
  let hidden: boolean;

  beforeEach(() => {
    store = new Map();
    hidden = true;
    FakeNotification.permission = "default";
    FakeNotification.shown = [];
    vi.stubGlobal("window", { Notification: FakeNotification, focus: () => {} });
    vi.stubGlobal("Notification", FakeNotification);
    vi.stubGlobal("localStorage", {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
      removeItem: (k: string) => void store.delete(k),
    });
    vi.stubGlobal("document", {
      get hidden() {
        return hidden;
      },
    });
  });
  afterEach(() => vi.unstubAllGlobals());

  it("notify only when opted in and the tab is hidden", () => {
    expect(shouldNotify(true, true)).toBe(true);
    expect(shouldNotify(true, false)).toBe(false);
    expect(shouldNotify(false, true)).toBe(false);
  });

  it("asks for permission when turned on, and remembers the choice", async () => {
    FakeNotification.permission = "granted";
    expect(await setNotificationsEnabled(true)).toBe(true);
    expect(notificationsEnabled()).toBe(true);
    expect(await setNotificationsEnabled(false)).toBe(false);
    expect(notificationsEnabled()).toBe(false);
  });

  it("stays off when the browser's permission is refused", async () => {
    FakeNotification.permission = "denied";
    expect(await setNotificationsEnabled(true)).toBe(false);
    expect(notificationsEnabled()).toBe(false);
  });

  it("shows new critical alerts while hidden, as text, and nothing when visible or not opted in", async () => {
    const hostile = alert(7, { severity: 5, device_id: "dev-9", summary: "<b>hot</b>" });
    notifyCriticalAlerts([hostile]);
    expect(FakeNotification.shown).toEqual([]); // not opted in
    FakeNotification.permission = "granted";
    await setNotificationsEnabled(true);
    hidden = false;
    notifyCriticalAlerts([hostile]);
    expect(FakeNotification.shown).toEqual([]);
    hidden = true;
    notifyCriticalAlerts([hostile]);
    expect(FakeNotification.shown).toEqual([{ title: "Critical alert on dev-9", options: { body: "<b>hot</b>", tag: "pulse-alert-7" } }]);
  });

  it("forgets the opt-in on a logout: the next user of a shared browser gets no pop-ups they never turned on", async () => {
    FakeNotification.permission = "granted";
    await setNotificationsEnabled(true);
    expect(store.get("pulse.notify-critical")).toBe("on");
    forgetNotificationsOptIn();
    expect(store.has("pulse.notify-critical")).toBe(false);
    // The browser's permission stays the site's: the next user logs in, and is not notified.
    expect(notificationsEnabled()).toBe(false);
    notifyCriticalAlerts([alert(7, { severity: 5 })]);
    expect(FakeNotification.shown).toEqual([]);
  });

  it("builds one notification per alert, tagged so repeats replace each other", () => {
    expect(alertNotification(alert(3, { summary: "x".repeat(500) })).options.body).toHaveLength(200);
  });
});
