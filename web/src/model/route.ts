/**
 * The dashboard's pages and their paths.
 *
 * @packageDocumentation
 */

import { isValidId } from "../client/index.js";

export type Route =
  | { page: "login"; next: string }
  | { page: "dashboard" }
  | { page: "device"; deviceId: string }
  | { page: "not-found"; path: string };

/** The route of a path such as `/`, `/login?next=%2Fdevices%2Fdev-1` or `/devices/dev-0001`. */
export function parseRoute(pathname: string, search = ""): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/") return { page: "dashboard" };
  if (path === "/login") return { page: "login", next: safeNext(new URLSearchParams(search).get("next")) };
  const device = /^\/devices\/([^/]+)$/.exec(path);
  if (device) {
    let id: string;
    try {
      id = decodeURIComponent(device[1]!);
    } catch {
      return { page: "not-found", path };
    }
    if (isValidId(id)) return { page: "device", deviceId: id };
  }
  return { page: "not-found", path };
}

/** The path of a route. */
export function routePath(route: Route): string {
  switch (route.page) {
    case "dashboard":
      return "/";
    case "login":
      return route.next === "/" ? "/login" : `/login?next=${encodeURIComponent(route.next)}`;
    case "device":
      return `/devices/${encodeURIComponent(route.deviceId)}`;
    case "not-found":
      return route.path;
  }
}

/** Where to go after logging in: only paths of this site, never another origin. */
export function safeNext(next: string | null): string {
  if (next === null || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  const route = parseRoute(next.split("?")[0]!);
  return route.page === "dashboard" || route.page === "device" ? routePath(route) : "/";
}

/**
 * The login page to send a tab whose session is gone to, from `route` (at `here`, its path and
 * query). A session that merely ended (expired, ended elsewhere) comes back to the page it was
 * on once the user logs in again. After a logout (`loggedOut`) it starts at the overview: on a
 * shared browser the next to log in may be someone else, of another tenant even, who would land
 * on "Device not found" with the last user's device id in the address bar.
 */
export function loginRoute(route: Route, here: string, loggedOut: boolean): Route {
  const keep = !loggedOut && (route.page === "dashboard" || route.page === "device");
  return { page: "login", next: keep ? here : "/" };
}
