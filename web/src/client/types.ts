/**
 * The shapes of the Pulse wire protocol (version `v1`), as a browser sees them.
 *
 * Fields may be added to any message within `v1`; these types list the ones the contract
 * guarantees. Timestamps are RFC 3339 strings in UTC.
 *
 * @packageDocumentation
 */

import type { Alert as WireAlert, AlertsSnapshot } from "./wire/alerts.gen.js";
import type { Event } from "./wire/event.gen.js";
import type {
  DeviceStatus as WireDeviceStatus,
  FleetCounts as WireFleetCounts,
  FleetDevice as WireFleetDevice,
  FleetSnapshot,
} from "./wire/fleet.gen.js";
import type { Telemetry } from "./wire/telemetry.gen.js";

/** An RFC 3339 timestamp in UTC, e.g. `2026-11-22T10:00:00.503112Z`. */
export type Timestamp = string;

// The data messages are generated from proto/schemas (themselves generated from the Rust
// types) by scripts/generate-wire.mjs: the contract is written once, in proto/.

/** One open alert of an {@link AlertsMessage}. */
export type Alert = WireAlert;
/** The tenant's open alerts, newest first, capped; `total_open` counts all of them. */
export type AlertsMessage = AlertsSnapshot;
/** Health of a device by the age of its newest reading. */
export type DeviceStatus = WireDeviceStatus;
/** Device counts over every device of the tenant; `total = online + stale + offline`. */
export type FleetCounts = WireFleetCounts;
/** One device of a {@link FleetMessage}. */
export type FleetDevice = WireFleetDevice;
/** Device counts and statuses of the tenant, least healthy devices first, capped. */
export type FleetMessage = FleetSnapshot;
/** The newest reading of one device. */
export type TelemetryMessage = Telemetry;
/**
 * An application event, such as `ticket:update` on topic `tickets`. `seq` is 1, 2, 3, … per
 * topic of the tenant: an event whose `seq` is not the last one + 1 follows a gap.
 */
export type EventMessage = Event;

/** Any data message a gateway forwards. */
export type DataMessage = AlertsMessage | FleetMessage | TelemetryMessage | EventMessage;

/** What a client may subscribe to. The tenant always comes from the token. */
export type Channel =
  | { type: "alerts" }
  | { type: "fleet" }
  | { type: "device"; device_id: string }
  | { type: "events"; topic: string };

/** Channel as the gateway names it in `subscribed` / `unsubscribed` replies. */
export type ReplyChannel =
  | { channel: "alerts" }
  | { channel: "fleet" }
  | { channel: "device"; device_id: string }
  | { channel: "events"; topic: string };

/** Machine-readable codes of `{"type":"error"}` replies. New codes may appear within `v1`. */
export type ServerErrorCode =
  | "invalid_json"
  | "unknown_action"
  | "unknown_type"
  | "missing_field"
  | "invalid_id"
  | "not_subscribed"
  | "rate_limited"
  | "too_many_subscriptions"
  | "invalid_token"
  | "unsupported_frame"
  | "unavailable"
  /** `since` of an events subscribe is not a non-negative integer. */
  | "invalid_since"
  /** The tenant already uses as many distinct subjects on this gateway as it may. */
  | "too_many_subjects"
  /** `device_id` names no device of the tenant. */
  | "unknown_device"
  | (string & {});

/**
 * Why events were missed, as an `events_reset` names it. New reasons may appear within `v1`.
 *
 * - `expired`: the events after `since` are no longer retained.
 * - `limit`: more events were missed than the gateway replays.
 * - `unavailable`: the history cannot be read right now.
 * - `gap`: a gap in the live events could not be filled. The client reports its own gaps
 *   (an event whose `seq` is not the next one) with this reason too.
 */
export type EventsResetReason = "expired" | "limit" | "unavailable" | "gap" | (string & {});

/**
 * `{"type":"events_reset"}`: events of `topic` were missed. It comes before the events that
 * follow it; refetch what the events drive, then go on with those events.
 */
export interface EventsResetMessage {
  type: "events_reset";
  topic: string;
  /** The `seq` of the first event that follows; `null` when the gateway does not know it. */
  oldest: number | null;
  reason: EventsResetReason;
}

/**
 * Replies the gateway sends on its own, as opposed to forwarded data messages.
 *
 * `subscribed` for an events channel subscribed without `since` carries `seq`: the topic's
 * newest `seq` at that moment, after which events follow. It is absent when the gateway does not
 * know it, and after a subscribe with `since` (the missed events are replayed instead).
 *
 * An `error` refusing a subscribe may name the channel it refers to in `channel`.
 */
export type ServerReply =
  | ({ type: "subscribed"; seq?: number } & ReplyChannel)
  | ({ type: "unsubscribed" } & ReplyChannel)
  | { type: "error"; code: ServerErrorCode; message: string; channel?: ReplyChannel }
  | { type: "pong" }
  | { type: "authenticated"; exp: number }
  | EventsResetMessage;

/**
 * A message a client sends. `since` resumes an events channel: the gateway first delivers
 * every retained event with a higher `seq`, then the live ones.
 */
export type ClientRequest =
  | ({ action: "subscribe"; since?: number } & Channel)
  | ({ action: "unsubscribe" } & Channel)
  | { action: "ping" }
  | { action: "auth"; token: string };

/** The answer of `GET /api/v2/ws-ticket`. */
export interface Ticket {
  /** A short-lived JWT (at most 60 s) for connecting to a gateway. */
  token: string;
  /** When the token expires, unix seconds by the server's clock. */
  expires_at: number;
  /**
   * Seconds the token is valid from when the web service answered. Renewal is timed from it
   * (or from the token's own `iat`/`exp`), never from `expires_at` against the browser's clock.
   */
  expires_in?: number;
  /** Gateway URLs such as `wss://host/api/v2/ws`; one is picked at random per attempt. */
  gateways: string[];
}

/** WebSocket close codes the gateway uses. The client acts on the code, never on the reason. */
export const CloseCode = {
  /** Normal closure. */
  NORMAL: 1000,
  /** The gateway is going away for this client (idle). */
  GOING_AWAY: 1001,
  /** A frame broke the WebSocket protocol. */
  PROTOCOL_ERROR: 1002,
  /** A binary frame was sent. */
  UNSUPPORTED_DATA: 1003,
  /** Seen when a connection ended without a close frame (network loss, dead peer). */
  ABNORMAL: 1006,
  /** A text frame was not valid UTF-8. */
  INVALID_PAYLOAD: 1007,
  /** A client frame was too large. */
  MESSAGE_TOO_BIG: 1009,
  /** The gateway is restarting or draining: reconnect at once, after a small jitter. */
  SERVICE_RESTART: 1012,
  /** The token is invalid or expired: fetch a fresh ticket before reconnecting. */
  UNAUTHORIZED: 4001,
  /** The token may not connect: do not retry. */
  FORBIDDEN: 4003,
  /** The client fell too far behind on an event channel: reconnect and recover. */
  SLOW_CONSUMER: 4008,
  /** Too many messages, or a connection cap was reached: reconnect with backoff. */
  RATE_LIMITED: 4029,
} as const;
