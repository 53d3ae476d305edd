/**
 * Who is logged in can change under an open page: every tab of the browser shares the session
 * cookie, so a login as another user in one tab makes every other tab's requests and tickets
 * that user's. A page that went on would show one tenant's header over another's data, and
 * resume its events from the first tenant's positions. Instead each page asks who is logged in
 * again ({@link watchSessionChanges}) when another tab logs in or out
 * ({@link announceSessionChange}, over a `BroadcastChannel`), and when a ticket it fetched names
 * another user than the page's ({@link reportSessionChange}): the change in another browsing
 * context no broadcast reached.
 *
 * @packageDocumentation
 */

import { tokenClaims } from "../client/index.js";
import type { Me } from "../model/validate.js";

const CHANNEL = "pulse-session";

/** What a tab was told of a change. */
export interface SessionChange {
  /**
   * Another tab logged out: whoever logs in next may be someone else, and starts at the
   * overview rather than on the page this tab shows (see `loginRoute`).
   */
  loggedOut: boolean;
}

/** What goes over the channel: a logout, or any other change. */
const LOGGED_OUT = "logged-out";
const CHANGED = "changed";

let local: (change: SessionChange) => void = () => {};

/** Tells the other tabs of this browser that this one logged in, or out (`loggedOut`). */
export function announceSessionChange({ loggedOut }: SessionChange = { loggedOut: false }): void {
  if (typeof BroadcastChannel === "undefined") return;
  const channel = new BroadcastChannel(CHANNEL);
  channel.postMessage(loggedOut ? LOGGED_OUT : CHANGED);
  channel.close();
}

/** Tells this page that its session may have changed (a ticket named another user). */
export function reportSessionChange(): void {
  local({ loggedOut: false });
}

/** Calls `handler` on every change announced by another tab or reported here; returns the stop. */
export function watchSessionChanges(handler: (change: SessionChange) => void): () => void {
  local = handler;
  const channel = typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel(CHANNEL);
  if (channel) channel.onmessage = (event: MessageEvent) => handler({ loggedOut: event.data === LOGGED_OUT });
  return () => {
    channel?.close();
    if (local === handler) local = () => {};
  };
}

/** Whether `a` and `b` are the same user of the same tenant (the page's identity). */
export function sameUser(a: Pick<Me, "tenant_id" | "email">, b: Pick<Me, "tenant_id" | "email">): boolean {
  return a.tenant_id === b.tenant_id && a.email === b.email;
}

/**
 * The tenant and email a ticket's token names, read from its claims (not verified: the gateway
 * does that); `null` when the token is not a JWT that says them.
 */
export function ticketHolder(token: string): Pick<Me, "tenant_id" | "email"> | null {
  const claims = tokenClaims(token);
  if (typeof claims?.tenant_id !== "string" || typeof claims.email !== "string") return null;
  return { tenant_id: claims.tenant_id, email: claims.email };
}
