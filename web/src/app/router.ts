/**
 * In-page navigation with the History API: the page never reloads.
 *
 * @packageDocumentation
 */

import { useSyncExternalStore } from "react";

import { parseRoute, routePath, type Route } from "../model/route.js";

const listeners = new Set<() => void>();
let current: { key: string; route: Route } | undefined;

function snapshot(): Route {
  const key = `${location.pathname}${location.search}`;
  if (current?.key !== key) current = { key, route: parseRoute(location.pathname, location.search) };
  return current.route;
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

/** The current route; re-renders on {@link navigate} and on the browser's back and forward. */
export function useRoute(): Route {
  return useSyncExternalStore(subscribe, snapshot);
}

/** Goes to `to` without reloading; `replace` leaves no history entry behind. */
export function navigate(to: Route | string, options: { replace?: boolean } = {}): void {
  const path = typeof to === "string" ? to : routePath(to);
  if (path === `${location.pathname}${location.search}`) return;
  if (options.replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.scrollTo(0, 0);
  for (const listener of [...listeners]) listener();
}
