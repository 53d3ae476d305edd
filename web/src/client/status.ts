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
 * - `live`: the socket is open, the gateway has answered on it (the client pings as it opens,
 *   so a connection refused right after the upgrade, 4001/4029, is never `live`), and every
 *   held channel has been (re)subscribed.
 * - `reconnecting`: the connection dropped or an attempt failed; the client is retrying.
 * - `offline`: not trying to connect: the app closed the client (or never started it), the
 *   gateway refused the token with 4003, or the browser reports no network.
 */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline";

/** Why the client is `offline`. */
export type OfflineReason =
  /** Not started yet, or closed by the app with {@link PulseClient.close}. */
  | "closed"
  /** The gateway closed with 4003; starting again needs a token that may connect. */
  | "forbidden"
  /** The browser reports `navigator.onLine === false`; the client resumes when it is back. */
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
