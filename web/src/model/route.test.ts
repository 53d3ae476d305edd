import { describe, expect, it } from "vitest";

import { loginRoute, parseRoute, routePath, safeNext } from "./route.js";

describe("parseRoute", () => {
  it("knows the dashboard, the login page and device pages", () => {
    expect(parseRoute("/")).toEqual({ page: "dashboard" });
    expect(parseRoute("/login", "?next=%2Fdevices%2Fdev-1")).toEqual({ page: "login", next: "/devices/dev-1" });
    expect(parseRoute("/devices/dev-0001/")).toEqual({ page: "device", deviceId: "dev-0001" });
  });

  it("refuses device ids outside the id rule", () => {
    expect(parseRoute("/devices/a.b")).toEqual({ page: "not-found", path: "/devices/a.b" });
    expect(parseRoute("/devices/%E0%A4%A")).toMatchObject({ page: "not-found" });
    expect(parseRoute("/nope")).toEqual({ page: "not-found", path: "/nope" });
  });

  it("round-trips through routePath", () => {
    for (const path of ["/", "/login", "/devices/dev-0001", "/login?next=%2Fdevices%2Fdev-1"]) {
      const [pathname, search] = path.split("?");
      expect(routePath(parseRoute(pathname!, search ? `?${search}` : ""))).toBe(path);
    }
  });
});

describe("safeNext", () => {
  it("allows only pages of this app after login", () => {
    expect(safeNext("/devices/dev-1")).toBe("/devices/dev-1");
    expect(safeNext(null)).toBe("/");
    expect(safeNext("https://evil.example/")).toBe("/");
    expect(safeNext("//evil.example/")).toBe("/");
    expect(safeNext("/\\evil.example")).toBe("/");
    expect(safeNext("/login")).toBe("/");
  });
});

describe("loginRoute", () => {
  const device = parseRoute("/devices/dev-0042");

  it("brings a user whose session merely ended back to the page they were on", () => {
    expect(loginRoute(device, "/devices/dev-0042", false)).toEqual({ page: "login", next: "/devices/dev-0042" });
    expect(loginRoute(parseRoute("/nope"), "/nope", false)).toEqual({ page: "login", next: "/" });
  });

  it("starts the next user after a logout at the overview, not on the last user's device", () => {
    // A shared wall browser: the next to log in may be of another tenant, where the device is
    // "not found", and its id is none of their business.
    expect(loginRoute(device, "/devices/dev-0042", true)).toEqual({ page: "login", next: "/" });
    expect(routePath(loginRoute(device, "/devices/dev-0042", true))).toBe("/login");
  });
});
