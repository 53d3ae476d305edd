/**
 * Whether the browser believes it is online.
 *
 * @packageDocumentation
 */

/** Tells whether the network is up and when that changes. */
export interface NetworkMonitor {
  /** False only when the device is known to be offline. */
  isOnline(): boolean;
  /**
   * Calls `listener` with the new value whenever it changes.
   *
   * @returns a function that stops listening.
   */
  watch(listener: (online: boolean) => void): () => void;
}

/** A monitor that always reports online; used where there is no browser. */
export const alwaysOnline: NetworkMonitor = {
  isOnline: () => true,
  watch: () => () => {},
};

interface BrowserLike {
  navigator?: { onLine?: boolean };
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
}

/**
 * The browser's view: `navigator.onLine` and the window `online` / `offline` events. Outside a
 * browser it reports online and never changes.
 */
export function browserNetwork(scope: unknown = globalThis): NetworkMonitor {
  const g = scope as BrowserLike;
  if (typeof g.addEventListener !== "function" || typeof g.removeEventListener !== "function") {
    return {
      isOnline: () => g.navigator?.onLine !== false,
      watch: () => () => {},
    };
  }
  const add = g.addEventListener.bind(g);
  const remove = g.removeEventListener.bind(g);
  return {
    isOnline: () => g.navigator?.onLine !== false,
    watch(listener) {
      const up = (): void => listener(true);
      const down = (): void => listener(false);
      add("online", up);
      add("offline", down);
      return () => {
        remove("online", up);
        remove("offline", down);
      };
    },
  };
}

/** Whether the page is shown, and when that changes. */
export interface VisibilityMonitor {
  /**
   * Calls `listener` each time the page becomes visible again.
   *
   * @returns a function that stops listening.
   */
  watchVisible(listener: () => void): () => void;
}

interface DocumentLike {
  visibilityState?: string;
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
}

/**
 * The browser's view: `document.visibilityState` and `visibilitychange`. Outside a browser the
 * page never becomes visible again.
 */
export function browserVisibility(scope: unknown = globalThis): VisibilityMonitor {
  const doc = (scope as { document?: DocumentLike }).document;
  if (!doc || typeof doc.addEventListener !== "function" || typeof doc.removeEventListener !== "function") {
    return { watchVisible: () => () => {} };
  }
  const add = doc.addEventListener.bind(doc);
  const remove = doc.removeEventListener.bind(doc);
  return {
    watchVisible(listener) {
      const changed = (): void => {
        if (doc.visibilityState === "visible") listener();
      };
      add("visibilitychange", changed);
      return () => remove("visibilitychange", changed);
    },
  };
}
