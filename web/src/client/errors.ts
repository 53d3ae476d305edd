/**
 * Problems the client reports instead of throwing: on the `error` topic of the bus and in the
 * connection status. None of them stops the client.
 *
 * @packageDocumentation
 */

import type { Channel } from "./types.js";

/** What went wrong. */
export type ClientErrorKind =
  /** A frame that is not JSON, not an object, binary, or a known type with a broken shape. */
  | "malformed_message"
  /** A JSON object whose `type` this client does not know (newer gateways may add types). */
  | "unknown_message"
  /** A `{"type":"error"}` reply from the gateway; `code` holds its error code. */
  | "server_error"
  /** `getTicket()` failed or returned something that is not a ticket. */
  | "ticket_failed"
  /** The WebSocket could not be created (bad URL, no gateway in the ticket). */
  | "connect_failed"
  /** The WebSocket did not open in time. */
  | "connect_timeout"
  /** Nothing arrived on an open socket for too long; the socket was dropped. */
  | "heartbeat_timeout"
  /** Renewing the token of an open connection failed; it is retried. */
  | "renew_failed"
  /** The gateway closed with 4003: this token may not connect. The client stays offline. */
  | "forbidden"
  /** A fallback REST poll failed; the next one is tried on schedule. */
  | "poll_failed"
  /**
   * The gateway closed with 1002 (protocol error), 1003 (unsupported data), 1007 (invalid UTF-8)
   * or 1009 (message too big): this client sent
   * something the protocol does not allow — a bug to fix, not a network fault. The client
   * reconnects only after the longest backoff; `code` holds the close code.
   */
  | "protocol_violation"
  /** The gateway closed with 4029 (rate limit or connection cap); `code` is 4029. */
  | "rate_limited";

/** A problem reported by the client. */
export interface ClientError {
  kind: ClientErrorKind;
  /** Human-readable description; may change between versions. */
  message: string;
  /** The gateway's error code (for `server_error`) or the close code (for `forbidden`). */
  code?: string | number;
  /**
   * For `malformed_message`: the held channel the message was for, when it names one. Its
   * widget can show that an update was refused instead of going on with the last good one.
   */
  channel?: Channel;
  /** The offending data, truncated when it is text. */
  data?: unknown;
  /** The underlying exception, when there is one. */
  cause?: unknown;
}

/** Longest piece of a bad frame quoted in an error. */
const QUOTE_LIMIT = 200;

/** `text` cut to a length that is safe to keep in an error report. */
export function quote(text: string): string {
  return text.length <= QUOTE_LIMIT ? text : `${text.slice(0, QUOTE_LIMIT)}…`;
}

/** A readable message for any thrown value. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
