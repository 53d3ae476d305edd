/**
 * The Pulse browser client: one WebSocket per tab to a Pulse gateway, with reference-counted
 * subscriptions, `seq` ordering, automatic reconnects, token renewal, a heartbeat and a REST
 * fallback. Framework-free; the dashboard builds on it.
 *
 * @packageDocumentation
 */

export { PulseClient } from "./connection.js";
export type {
  ChannelMessage,
  EventsHandlers,
  PulseClientOptions,
  Release,
  SocketConstructor,
  SocketLike,
} from "./connection.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_RENEW_AT,
  DEFAULT_RENEW_RETRY_MS,
  DEFAULT_RESTART_JITTER_MS,
  DEFAULT_STABLE_AFTER_MS,
} from "./connection.js";

export { TopicBus, createPulseBus, logHandlerError } from "./bus.js";
export type {
  Handler,
  HandlerErrorHook,
  PulseBus,
  PulseTopic,
  PulseTopics,
  TopicBusOptions,
  Unsubscribe,
} from "./bus.js";

export {
  Backoff,
  backoffCeiling,
  backoffDelay,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_CAP_MS,
} from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";

export { SeqTracker } from "./seq.js";
export type { BaselineVerdict, EventVerdict } from "./seq.js";

export type { EventsReset } from "./eventsReset.js";

export {
  FallbackPoller,
  DEFAULT_FALLBACK_INTERVAL_MS,
  DEFAULT_FALLBACK_THRESHOLD_MS,
} from "./fallback.js";
export type { EventsPosition, FallbackOptions, PollContext, PollFunction, PollSucceeded } from "./fallback.js";

export { Heartbeat, DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_PING_INTERVAL_MS } from "./heartbeat.js";
export type { HeartbeatOptions } from "./heartbeat.js";

export { alwaysOnline, browserNetwork, browserVisibility } from "./network.js";
export type { NetworkMonitor, VisibilityMonitor } from "./network.js";
export { isRetryableRefusal } from "./subscription.js";
export type { SubscriptionState, SubscriptionStatus } from "./subscription.js";

export { DEFAULT_TICKET_URL, TicketError, parseTicket, pickGateway, ticketFetcher, tokenClaims } from "./ticket.js";
export type { TicketFetcherOptions } from "./ticket.js";

export { globalMonotonicNow, globalNow, globalTimers } from "./timers.js";
export type { TimerHandle, Timers } from "./timers.js";

export {
  ID_PATTERN,
  channelTopic,
  eventsResetTopic,
  isValidId,
  messageTopic,
  parseServerFrame,
  withToken,
} from "./protocol.js";
export type { DataTopic, EventsResetTopic, EventsTopic, ServerFrame, SnapshotTopic, TelemetryTopic } from "./protocol.js";

export type { ClientError, ClientErrorKind } from "./errors.js";
export type { ConnectionState, ConnectionStatus, OfflineReason } from "./status.js";

export { CloseCode } from "./types.js";
export type {
  Alert,
  AlertsMessage,
  Channel,
  ClientRequest,
  DataMessage,
  DeviceStatus,
  EventMessage,
  EventsResetMessage,
  EventsResetReason,
  FleetCounts,
  FleetDevice,
  FleetMessage,
  ReplyChannel,
  ServerErrorCode,
  ServerReply,
  TelemetryMessage,
  Ticket,
  Timestamp,
} from "./types.js";
