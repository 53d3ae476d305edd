import { describe, expect, it } from "vitest";

import { alwaysOnline, browserNetwork } from "./network.js";

class FakeWindow extends EventTarget {
  navigator = { onLine: true };
}

describe("browserNetwork", () => {
  it("follows navigator.onLine and the online/offline events", () => {
    const win = new FakeWindow();
    const net = browserNetwork(win);
    const seen: boolean[] = [];
    const stop = net.watch((online) => seen.push(online));
    expect(net.isOnline()).toBe(true);
    win.navigator.onLine = false;
    win.dispatchEvent(new Event("offline"));
    expect(net.isOnline()).toBe(false);
    win.navigator.onLine = true;
    win.dispatchEvent(new Event("online"));
    stop();
    win.dispatchEvent(new Event("offline"));
    expect(seen).toEqual([false, true]);
  });

  it("counts an unknown onLine as online", () => {
    expect(browserNetwork({}).isOnline()).toBe(true);
    expect(browserNetwork({ navigator: {} }).isOnline()).toBe(true);
    expect(browserNetwork({ navigator: { onLine: false } }).isOnline()).toBe(false);
    expect(alwaysOnline.isOnline()).toBe(true);
  });
});
