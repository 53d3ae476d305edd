/**
 * Connection state, as published on the `connection` topic.
 *
 * @packageDocumentation
 */

import type { ClientError } from "./errors.js";

/**
 * Where the connection stands.
 *
 * - `connecting`: the first attempt after {@link PulseClient.start} is under way.
 * - `live`: the socket is open and the gateway has answered on it, with its first frame of any
 *   kind (the client pings as it opens, so a connection refused right after the upgrade,
 *   4001/4029, is never `live`). It says nothing of the held channels: each may still be
 *   asked, refused or retrying; read {@link PulseClient.subscriptionStatus} (or the
 *   `subscription` topic) for whether a channel's data flows.
 * - `reconnecting`: the connection dropped or an attempt failed; the client is retrying.
 * - `offline`: the app closed the client (or never started it), or the gateway refused the
 *   token with 4003: no attempt is made. Or the browser reports no network: the client then
 *   tries only at the longest backoff, in case the browser is wrong (see `OfflineReason`).
 */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline";

/** Why the client is `offline`. */
export type OfflineReason =
  /** Not started yet, or closed by the app with {@link PulseClient.close}. */
  | "closed"
  /** The gateway closed with 4003; starting again needs a token that may connect. */
  | "forbidden"
  /**
   * The browser reports `navigator.onLine === false`; the client resumes when it is back. Since
   * some browsers report it on a network that works and never fire `online`, the client still
   * tries the socket at the longest backoff (30 s by default), and at once when a fallback poll
   * succeeds or the tab is shown; a connection that works makes it `live` as usual.
   */
  | "network";

/** A snapshot of the connection, published on the `connection` topic whenever it changes. */
export interface ConnectionStatus {
  state: ConnectionState;
  /** Set when `state` is `offline`. */
  reason?: OfflineReason;
  /** Close code of the socket whose end led to this state, when there was one. */
  closeCode?: number;
  /** The failure that led to this state, when there was one. */
  error?: ClientError;
  /** True while REST fallback polling is active. */
  polling: boolean;
  /** When this state began (client clock, milliseconds). */
  since: number;
  /** When the next connection attempt is due, while `reconnecting` (client clock, milliseconds). */
  nextAttemptAt?: number;
}
