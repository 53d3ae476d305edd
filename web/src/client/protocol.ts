/**
 * Encoding client requests and classifying server frames. Parsing is total: every frame maps to
 * a data message, a reply, an unknown type or a malformed frame; nothing here throws on input.
 *
 * @packageDocumentation
 */

import type {
  Channel,
  ClientRequest,
  DataMessage,
  ReplyChannel,
  ServerReply,
} from "./types.js";
import { DATA_TYPES, envelopeProblem } from "./wire/validate.js";

/** A bus topic carrying a device's telemetry: `telemetry:<device_id>`. */
export type TelemetryTopic = `telemetry:${string}`;
/** A bus topic carrying the events of one topic: `events:<topic>`. */
export type EventsTopic = `events:${string}`;
/** A bus topic telling that events of one topic were missed: `events_reset:<topic>`. */
export type EventsResetTopic = `events_reset:${string}`;
/** A bus topic carrying snapshots: each message replaces the previous one. */
export type SnapshotTopic = "alerts" | "fleet" | TelemetryTopic;
/** A bus topic carrying data messages of one channel. */
export type DataTopic = SnapshotTopic | EventsTopic;

/** The id rule for device ids and topics: 1 to 64 ASCII letters, digits, `_` or `-`. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** True when `id` may be used as a device id or an event topic. */
export function isValidId(id: unknown): id is string {
  return typeof id === "string" && ID_PATTERN.test(id);
}

/**
 * The bus topic of a channel: `alerts`, `fleet`, `telemetry:<device_id>` or `events:<topic>`.
 *
 * @throws TypeError when the channel is unknown or its id breaks the id rule.
 */
export function channelTopic(channel: Channel): DataTopic {
  switch (channel.type) {
    case "alerts":
      return "alerts";
    case "fleet":
      return "fleet";
    case "device":
      if (!isValidId(channel.device_id)) {
        throw new TypeError(`invalid device_id ${JSON.stringify(channel.device_id)}`);
      }
      return `telemetry:${channel.device_id}`;
    case "events":
      if (!isValidId(channel.topic)) {
        throw new TypeError(`invalid topic ${JSON.stringify(channel.topic)}`);
      }
      return `events:${channel.topic}`;
    default:
      throw new TypeError(`unknown channel type ${JSON.stringify((channel as { type?: unknown }).type)}`);
  }
}

/** A copy of `channel` holding only the fields the protocol knows. */
export function normalizeChannel(channel: Channel): Channel {
  switch (channel.type) {
    case "device":
      return { type: "device", device_id: channel.device_id };
    case "events":
      return { type: "events", topic: channel.topic };
    default:
      return { type: channel.type };
  }
}

/** The bus topic on which missed events of event topic `topic` are announced. */
export function eventsResetTopic(topic: string): EventsResetTopic {
  return `events_reset:${topic}`;
}

/** The bus topic a data message is published on. */
export function messageTopic(message: DataMessage): DataTopic {
  if (message.type === "telemetry") return `telemetry:${message.device_id}`;
  if (message.type === "event") return `events:${message.topic}`;
  return message.type;
}

/** True for topics whose messages are snapshots (alerts, fleet, telemetry), not events. */
export function isSnapshotTopic(topic: string): topic is SnapshotTopic {
  return topic === "alerts" || topic === "fleet" || topic.startsWith("telemetry:");
}

/** The text frame for a request. */
export function encodeRequest(request: ClientRequest): string {
  return JSON.stringify(request);
}

/**
 * `{"action":"subscribe", ...channel}`, with `since` for an events channel that resumes after
 * the event of that `seq`. `since` is left out for other channels.
 */
export function subscribeRequest(channel: Channel, since?: number): ClientRequest {
  const request: ClientRequest = { action: "subscribe", ...normalizeChannel(channel) };
  if (since !== undefined && channel.type === "events") request.since = since;
  return request;
}

/** `{"action":"unsubscribe", ...channel}` */
export function unsubscribeRequest(channel: Channel): ClientRequest {
  return { action: "unsubscribe", ...normalizeChannel(channel) };
}

/** The WebSocket subprotocol gateways speak; offered beside the ticket. */
export const PROTOCOL = "pulse.v1";

/**
 * The subprotocols that carry a ticket (`pulse.v1`, `pulse.ticket.<token>`): the token stays out
 * of the URL, so out of proxy and access logs. Browsers cannot set other headers on a WebSocket.
 * `undefined` for a token that cannot be a subprotocol.
 */
export function ticketProtocols(token: string): string[] | undefined {
  // A subprotocol is an HTTP token: a JWT always is one; anything else goes in the URL.
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(token)) return undefined;
  return [PROTOCOL, `pulse.ticket.${token}`];
}

/**
 * `gatewayUrl` with the token in its query: for a gateway that does not select {@link PROTOCOL}
 * (one older than the subprotocol), which makes the browser fail the handshake.
 */
export function withToken(gatewayUrl: string, token: string): string {
  const separator = gatewayUrl.includes("?") ? "&" : "?";
  return `${gatewayUrl}${separator}token=${encodeURIComponent(token)}`;
}

/** What a server frame turned out to be. */
export type ServerFrame =
  | { kind: "data"; message: DataMessage }
  | { kind: "reply"; reply: ServerReply }
  /** A well-formed object whose `type` is not known to this client. */
  | { kind: "unknown"; type: string; value: Record<string, unknown> }
  /**
   * A frame that breaks the contract. `topic`: the data topic it names, when its `type` and id
   * can still be read, so that the widget showing that topic can say its update was refused.
   */
  | { kind: "malformed"; reason: string; topic?: DataTopic };

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/**
 * Why a data message is malformed, or `undefined` when its envelope matches the contract (its
 * list items and readings are checked by the widget that shows them).
 */
function dataProblem(value: Obj): string | undefined {
  const problem = envelopeProblem(String(value.type), value);
  if (problem) return problem;
  // The schema says integer; the seq logic needs one a JavaScript number holds exactly.
  if (!isSeq(value.seq)) return "`seq` must be a non-negative safe integer";
  return undefined;
}

/** The topic a data message names, read from its `type` and id alone; `undefined` when unreadable. */
function namedTopic(value: Obj): DataTopic | undefined {
  switch (value.type) {
    case "alerts":
    case "fleet":
      return value.type;
    case "telemetry":
      return isValidId(value.device_id) ? `telemetry:${value.device_id}` : undefined;
    case "event":
      return isValidId(value.topic) ? `events:${value.topic}` : undefined;
    default:
      return undefined;
  }
}

function replyChannel(value: Obj): ReplyChannel | undefined {
  switch (value.channel) {
    case "alerts":
      return { channel: "alerts" };
    case "fleet":
      return { channel: "fleet" };
    case "device":
      return isValidId(value.device_id) ? { channel: "device", device_id: value.device_id } : undefined;
    case "events":
      return isValidId(value.topic) ? { channel: "events", topic: value.topic } : undefined;
    default:
      return undefined;
  }
}

function reply(value: Obj): ServerFrame {
  switch (value.type) {
    case "subscribed": {
      const channel = replyChannel(value);
      if (!channel) return { kind: "malformed", reason: "`subscribed` names no valid channel" };
      if (channel.channel !== "events" || value.seq === undefined || value.seq === null) {
        return { kind: "reply", reply: { type: "subscribed", ...channel } };
      }
      if (!isSeq(value.seq)) return { kind: "malformed", reason: "`subscribed`: `seq` must be a non-negative integer" };
      return { kind: "reply", reply: { type: "subscribed", ...channel, seq: value.seq } };
    }
    case "unsubscribed": {
      const channel = replyChannel(value);
      if (!channel) return { kind: "malformed", reason: "`unsubscribed` names no valid channel" };
      return { kind: "reply", reply: { type: "unsubscribed", ...channel } };
    }
    case "error": {
      if (typeof value.code !== "string") {
        return { kind: "malformed", reason: "`error` reply without a string `code`" };
      }
      const error: ServerReply = {
        type: "error",
        code: value.code,
        message: typeof value.message === "string" ? value.message : "",
      };
      // Optional: the channel a refused subscribe referred to. One that does not parse is left
      // out rather than losing the error itself.
      const channel = value.channel === undefined ? undefined : replyChannel(value);
      if (channel) error.channel = channel;
      return { kind: "reply", reply: error };
    }
    case "events_reset": {
      if (!isValidId(value.topic)) return { kind: "malformed", reason: "`events_reset`: `topic` must be a valid id" };
      const oldest = value.oldest ?? null;
      if (oldest !== null && !isSeq(oldest)) {
        return { kind: "malformed", reason: "`events_reset`: `oldest` must be a non-negative integer or null" };
      }
      if (typeof value.reason !== "string") return { kind: "malformed", reason: "`events_reset`: `reason` must be a string" };
      return { kind: "reply", reply: { type: "events_reset", topic: value.topic, oldest, reason: value.reason } };
    }
    case "pong":
      return { kind: "reply", reply: { type: "pong" } };
    case "authenticated":
      if (!isCount(value.exp)) {
        return { kind: "malformed", reason: "`authenticated` reply without a numeric `exp`" };
      }
      return { kind: "reply", reply: { type: "authenticated", exp: value.exp } };
    default:
      return { kind: "unknown", type: String(value.type), value };
  }
}

/** Classifies an already parsed JSON value. */
export function classifyValue(value: unknown): ServerFrame {
  if (!isObject(value)) return { kind: "malformed", reason: "a message must be a JSON object" };
  if (typeof value.type !== "string") return { kind: "malformed", reason: "`type` must be a string" };
  if (DATA_TYPES.has(value.type)) {
    const problem = dataProblem(value);
    if (problem) return { kind: "malformed", reason: `${value.type}: ${problem}`, topic: namedTopic(value) };
    return { kind: "data", message: value as unknown as DataMessage };
  }
  return reply(value);
}

/** Classifies one frame as received by `WebSocket.onmessage` (`event.data`). */
export function parseServerFrame(data: unknown): ServerFrame {
  if (typeof data !== "string") return { kind: "malformed", reason: "binary frames are not part of the protocol" };
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch (error) {
    return { kind: "malformed", reason: `invalid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
  return classifyValue(value);
}
