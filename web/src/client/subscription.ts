/**
 * Where each held subscription stands on the gateway, as centrifuge-js keeps it: a widget can
 * tell "subscribed and current" from "asked, no answer yet", "refused for now, retrying" and
 * "refused for good", instead of trusting a green connection state.
 *
 * @packageDocumentation
 */

import type { Channel, ServerErrorCode } from "./types.js";

/**
 * - `pending`: subscribe sent (or waiting for a socket); no answer yet.
 * - `subscribed`: the gateway acknowledged it; data flows.
 * - `retrying`: the gateway refused it for now (`unavailable`, `rate_limited`,
 *   `too_many_subjects`, `unknown_device`: a device added a moment ago is listed by the
 *   poller's next read) or did not answer in time; the client asks again after a backoff.
 * - `failed`: refused for good (`invalid_id`, `too_many_subscriptions`, ...); asked again only
 *   after the next reconnect, or, for `too_many_subscriptions`, once a release of another
 *   channel freed a subscription on the connection.
 */
export type SubscriptionState = "pending" | "subscribed" | "retrying" | "failed";

/** A held channel's state, published on the `subscription` topic at every change. */
export interface SubscriptionStatus {
  readonly channel: Channel;
  readonly state: SubscriptionState;
  /**
   * The gateway's refusal, for `retrying` and `failed` (absent after a timeout), and for
   * `pending` while a refused channel is asked again.
   */
  readonly error?: { readonly code: ServerErrorCode; readonly message: string };
  /** When the state began, by the client's clock (ms). */
  readonly since: number;
  /** For `retrying`: when the next subscribe goes out (ms). */
  readonly nextAttemptAt?: number;
}

/** Refusals that may pass: the subscribe is tried again after a backoff. */
const RETRYABLE: ReadonlySet<string> = new Set(["unavailable", "rate_limited", "too_many_subjects", "unknown_device"]);

/** Whether a subscribe refused with `code` is worth asking again without a reconnect. */
export function isRetryableRefusal(code: string): boolean {
  return RETRYABLE.has(code);
}
