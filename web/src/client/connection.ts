/**
 * {@link PulseClient}: one WebSocket per tab to a Pulse gateway, shared by every widget.
 *
 * @packageDocumentation
 */

import { Backoff, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS } from "./backoff.js";
import {
  createPulseBus,
  type Handler,
  type HandlerErrorHook,
  type PulseBus,
  type PulseTopic,
  type PulseTopics,
  type Unsubscribe,
} from "./bus.js";
import { describe, quote, type ClientError } from "./errors.js";
import type { EventsReset } from "./eventsReset.js";
import {
  DEFAULT_FALLBACK_INTERVAL_MS,
  DEFAULT_FALLBACK_THRESHOLD_MS,
  FallbackPoller,
  type EventsPosition,
  type PollFunction,
} from "./fallback.js";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_PING_INTERVAL_MS, Heartbeat } from "./heartbeat.js";
import { browserNetwork, browserVisibility, type NetworkMonitor, type VisibilityMonitor } from "./network.js";
import { Pacer } from "./pacer.js";
import {
  channelTopic,
  classifyValue,
  encodeRequest,
  eventsResetTopic,
  isSnapshotTopic,
  messageTopic,
  normalizeChannel,
  parseServerFrame,
  subscribeRequest,
  unsubscribeRequest,
  ticketProtocols,
  withToken,
  type DataTopic,
  type EventsTopic,
  type SnapshotTopic,
} from "./protocol.js";
import { SeqTracker } from "./seq.js";
import { isRetryableRefusal, type SubscriptionStatus } from "./subscription.js";
import type { ConnectionState, ConnectionStatus } from "./status.js";
import { parseTicket, pickGateway, ticketLifetimeMs } from "./ticket.js";
import { globalMonotonicNow, globalNow, globalTimers, TimerSlot, type Timers } from "./timers.js";
import {
  CloseCode,
  type Channel,
  type ClientRequest,
  type DataMessage,
  type EventMessage,
  type ServerReply,
  type Ticket,
} from "./types.js";

/** Close codes that say this client sent what the protocol refuses: a bug, not a network fault. */
const CLIENT_FAULTS: ReadonlySet<number> = new Set([
  CloseCode.PROTOCOL_ERROR,
  CloseCode.UNSUPPORTED_DATA,
  CloseCode.INVALID_PAYLOAD,
  CloseCode.MESSAGE_TOO_BIG,
]);

/** Shortest wait after a 4029 whose reason names no `retry_after`. */
export const DEFAULT_RATE_LIMITED_WAIT_MS = 5_000;

/**
 * The wait a 4029 close asks for: its reason ends with `retry_after=<seconds>` (the gateway's
 * hint; see proto/README.md), else {@link DEFAULT_RATE_LIMITED_WAIT_MS}.
 */
export function retryAfterMs(reason: string): number {
  const match = /retry_after=(\d{1,6})\b/.exec(reason);
  return match ? Number(match[1]) * 1000 : DEFAULT_RATE_LIMITED_WAIT_MS;
}

/** An event handler type whose parameter is checked bivariantly, as DOM handlers are. */
type Listener<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** The part of the browser `WebSocket` the client uses. */
export interface SocketLike {
  onopen: Listener<unknown> | null;
  onmessage: Listener<{ data: unknown }> | null;
  onclose: Listener<{ code: number; reason: string }> | null;
  onerror: Listener<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A `WebSocket`-compatible constructor; the browser's `WebSocket` is one. */
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike;

/** Default delay window after a 1012 (gateway restarting or draining): up to 1 s. */
export const DEFAULT_RESTART_JITTER_MS = 1_000;
/** Default time a socket may take to open: 10 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default point in a token's lifetime at which it is renewed: 75 %. */
export const DEFAULT_RENEW_AT = 0.75;
/** Default delay before retrying a failed token renewal: 5 s. */
export const DEFAULT_RENEW_RETRY_MS = 5_000;
/** Default time a connection must stay live for the backoff to start over: 10 s. */
export const DEFAULT_STABLE_AFTER_MS = 10_000;
/**
 * Renewals are never scheduled closer together than this: a token whose lifetime reads as zero
 * or less (a malformed ticket) must not start a renewal loop. It stays well under the shortest
 * lifetime a server issues (5 s), so short tokens are still renewed before they end.
 */
const MIN_RENEW_DELAY_MS = 1_000;
/** A failed renewal is asked again at the latest this long before the token expires. */
const RENEW_LAST_TRY_MS = 3_000;
/**
 * How long after a `rate_limited` error that names no request the requests it may have dropped
 * are sent again: "after a second", as the contract says. The gateway reports at most one such
 * error a second and refills its allowance at `PULSE_CLIENT_MSGS_PER_SECOND` (50 by default), so
 * a shorter (or random 0–1 s) wait would mostly be refused again.
 */
export const RATE_LIMITED_RESEND_MS = 1_000;

/** Options of a {@link PulseClient}. Only `getTicket` is required. */
export interface PulseClientOptions {
  /**
   * Fetches a fresh ticket; called before every connection attempt and to renew the token.
   * Use {@link ticketFetcher} for `GET /api/v2/ws-ticket`. The request has the attempt's
   * deadline (`connectTimeoutMs`): `signal` aborts when it passes, and an answer after it is
   * ignored, so a hung ticket endpoint costs one attempt, not the connection.
   */
  getTicket: (signal?: AbortSignal) => Promise<Ticket>;
  /** REST fallback while the socket is down; without it there is no fallback. */
  poll?: PollFunction;
  /** Default the global `WebSocket`. */
  WebSocket?: SocketConstructor;
  /** Default the global `setTimeout` / `clearTimeout`. */
  timers?: Timers;
  /**
   * Wall clock in milliseconds, for the times the client publishes (`since`, `nextAttemptAt`)
   * and for reading a ticket's `expires_at`; default `Date.now`.
   */
  now?: () => number;
  /**
   * Monotonic clock in milliseconds, for the waits the client measures (the heartbeat's
   * silence, a wait the gateway asked for, an attempt's deadline, a token's lifetime, the
   * pacing); default `performance.now()`. The wall clock would stretch each of them by as much
   * as the system clock is set back: a dead socket shown live for an hour.
   */
  monotonicNow?: () => number;
  /** Random source in `[0, 1)` for jitter and the choice of gateway; default `Math.random`. */
  random?: () => number;
  /** Default the browser's `navigator.onLine` and `online` / `offline` events. */
  network?: NetworkMonitor;
  /**
   * Default the page's `visibilitychange`. When a hidden tab (whose timers the browser
   * throttled) is shown again, the client pings at once, or cuts a pending backoff short.
   */
  visibility?: VisibilityMonitor;
  /** Default 1000 ms. */
  backoffBaseMs?: number;
  /** Default 30000 ms. */
  backoffCapMs?: number;
  /** Delay window after a 1012 close; default {@link DEFAULT_RESTART_JITTER_MS}. */
  restartJitterMs?: number;
  /** Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  connectTimeoutMs?: number;
  /** Interval of `{"action":"ping"}`; default 20000 ms. */
  pingIntervalMs?: number;
  /** Silence after which an open socket counts as dead; default 45000 ms. */
  heartbeatTimeoutMs?: number;
  /** Fraction of the token's lifetime after which it is renewed; default {@link DEFAULT_RENEW_AT}. */
  renewAt?: number;
  /** Default {@link DEFAULT_RENEW_RETRY_MS}. */
  renewRetryMs?: number;
  /** A connection live at least this long resets the backoff; default {@link DEFAULT_STABLE_AFTER_MS}. */
  stableAfterMs?: number;
  /** A subscribe unanswered this long is sent again; default {@link DEFAULT_SUBSCRIBE_TIMEOUT_MS}. */
  subscribeTimeoutMs?: number;
  /** Time without a live socket before REST polling starts; default 5000 ms. */
  fallbackThresholdMs?: number;
  /** Interval of REST polls; default 30000 ms. */
  fallbackIntervalMs?: number;
  /** Gets errors thrown by bus handlers; default: logged to the console. */
  onHandlerError?: HandlerErrorHook;
  /** An existing bus to publish on; default a new one. */
  bus?: PulseBus;
}

/** Releases what {@link PulseClient.subscribe} or {@link PulseClient.watch} took; idempotent. */
export type Release = () => void;

/** The handlers of {@link PulseClient.watchEvents}. */
export interface EventsHandlers {
  /** Gets every event of the topic once, in `seq` order. */
  onEvent: Handler<EventMessage>;
  /**
   * Told that events were missed (the gateway could not replay them, or a `seq` skipped some):
   * refetch what the events drive. The events that follow still arrive through `onEvent`.
   */
  onReset: Handler<EventsReset>;
}

interface Holding {
  channel: Channel;
  count: number;
  /**
   * The gateway acknowledged a subscribe of it (`subscribed`) on some socket: its subscribers
   * have had its events since. An event topic subscribed again without a position to resume
   * from may then have missed some. One never acknowledged delivered nothing, so missed nothing.
   */
  acknowledged: boolean;
  /**
   * Subscribes sent for it on the current socket that the gateway has not answered yet (neither
   * `subscribed` nor a refusal naming it). While one is out the gateway may still take the
   * channel, even after the client stopped waiting for the answer, so releasing it unsubscribes.
   * A subscribe a `rate_limited` error dropped is never answered: the count then errs towards
   * an unsubscribe the gateway answers `not_subscribed`, never towards a channel left held.
   */
  unanswered: number;
  /** The `since` of the last subscribe sent for it. */
  since: number | undefined;
  /** Where it stands on the gateway. */
  status: SubscriptionStatus;
  /** The answer deadline of the subscribe in flight, or the retry after a refusal. */
  timer: TimerSlot;
  /** Backoff between subscribes refused for now. */
  backoff: Backoff;
  /**
   * Its subscribe on the current socket waits for a slot (see {@link Pacer}) and has not gone
   * out yet; a `rate_limited` error moves that slot back.
   */
  queued: boolean;
  /**
   * Refused for now (or left unanswered) and not taken since, through the subscribes that ask
   * again and the sockets that follow: REST polling stands in for it meanwhile.
   */
  refused: boolean;
}

/** A token's lifetime, counted from when its ticket arrived by the monotonic clock. */
interface TokenLifetime {
  receivedAt: number;
  ms: number;
}

/** An unsubscribe sent (or waiting for its slot) that the gateway has not answered yet. */
interface Unsubscribing {
  channel: Channel;
  /** Its slot, or its re-send after a `rate_limited` error. */
  timer: TimerSlot;
}

/** How long a subscribe may go unanswered before it is sent again. */
export const DEFAULT_SUBSCRIBE_TIMEOUT_MS = 10_000;

type SnapshotMessage = PulseTopics[SnapshotTopic];

/**
 * The Pulse protocol client. Create one per tab and share it.
 *
 * - {@link PulseClient.subscribe} holds a channel; the gateway is asked once however many
 *   holders there are, and released when the last one lets go.
 * - Data arrives on the {@link PulseClient.bus}: `alerts`, `fleet`, `telemetry:<device_id>`,
 *   `events:<topic>`; stale and duplicate messages are dropped by `seq`. Each event is delivered
 *   once and in order; a resubscription resumes after the last one delivered (`since`), and
 *   events that were missed all the same are announced on `events_reset:<topic>`.
 * - The connection heals itself: a fresh ticket before every attempt, full-jitter backoff that
 *   never gives up, every held channel restored, the token renewed before it expires, a
 *   heartbeat that detects dead sockets, and REST polling while the socket is down.
 * - The state is on the `connection` topic and in {@link PulseClient.status}.
 *
 * @example
 * ```ts
 * const client = new PulseClient({ getTicket: ticketFetcher() });
 * client.start();
 * const release = client.watch({ type: "alerts" }, (msg) => render(msg.alerts));
 * ```
 */
export class PulseClient {
  /** Where data, connection changes and errors are published. */
  readonly bus: PulseBus;

  private readonly getTicket: (signal?: AbortSignal) => Promise<Ticket>;
  private readonly Socket: SocketConstructor | undefined;
  private readonly timers: Timers;
  private readonly now: () => number;
  private readonly monotonic: () => number;
  private readonly random: () => number;
  private readonly network: NetworkMonitor;
  private readonly visibility: VisibilityMonitor;
  private stopWatchingVisibility: (() => void) | undefined;
  private readonly backoff: Backoff;
  private readonly restartJitterMs: number;
  private readonly backoffCapMs: number;
  private readonly connectTimeoutMs: number;
  private readonly renewAt: number;
  private readonly renewRetryMs: number;
  private readonly stableAfterMs: number;
  /**
   * When the network last came back (monotonic clock), to tell a network that flaps from one
   * that recovered.
   */
  private networkBackAt = Number.NEGATIVE_INFINITY;
  /**
   * A connection was made, or a fallback poll succeeded, while the browser said it was offline:
   * `navigator.onLine` reads false on a network that works (it does in some browsers, behind
   * some VPNs), so it is not believed until the browser next reports a change.
   */
  private offlineDisproved = false;
  private readonly subscribeTimeoutMs: number;

  private readonly seq = new SeqTracker();
  private readonly holdings = new Map<DataTopic, Holding>();
  private readonly latestSnapshots = new Map<SnapshotTopic, SnapshotMessage>();
  private readonly heartbeat: Heartbeat;
  private readonly fallback: FallbackPoller | undefined;
  private readonly retryTimer: TimerSlot;
  private readonly connectTimer: TimerSlot;
  private readonly renewTimer: TimerSlot;
  /** Ticket requests not answered yet (the attempt's, a renewal's). */
  private readonly ticketRequests = new Set<AbortController>();
  /** When the current socket's token expires, by the monotonic clock (from its lifetime). */
  private tokenEndsAt = Number.POSITIVE_INFINITY;
  /** When the renewed token in flight expires, by the monotonic clock: the current one once taken. */
  private authExpiresAt = Number.POSITIVE_INFINITY;
  /** Paces subscribes and unsubscribes within the gateway's message rate. */
  private readonly pacer: Pacer;
  /** Unsubscribes not answered yet on the open socket, by topic. */
  private readonly unsubscribing = new Map<DataTopic, Unsubscribing>();
  /** The token of a renewal's `auth` not answered yet on the open socket. */
  private authInFlight: string | undefined;
  /** Sends {@link PulseClient.authInFlight} again after a `rate_limited` error. */
  private readonly authResendTimer: TimerSlot;

  /** 1012 closes in a row of connections that had not been live for long. */
  private freshRestarts = 0;
  /** Before this time (monotonic clock) no attempt is made: a wait the gateway asked for. */
  private serverWaitUntil = Number.NEGATIVE_INFINITY;
  /** False when not started, closed by the app, or refused with 4003. */
  private wanted = false;
  /** Bumped whenever an attempt starts or the socket is dropped; stale async work checks it. */
  private generation = 0;
  private socket: SocketLike | undefined;
  private socketUrl: string | undefined;
  /** A gateway that is draining (closed with 1012): the next attempt prefers another. */
  private avoidUrl: string | undefined;
  /**
   * Whether the ticket goes in the URL instead of a subprotocol. It flips after an attempt that
   * never opened (a gateway that does not select `pulse.v1` fails the handshake, as does one
   * that is down), and stays as it is once a connection opens. Once a connection opened with
   * the subprotocol it no longer flips: a failure then is a gateway down, not the handshake, and
   * the token stays out of URLs (and the logs of proxies on the way).
   */
  private ticketInUrl = false;
  private subprotocolWorks = false;
  /**
   * A connection opened with the ticket in the URL before any opened with the subprotocol:
   * the attempt that failed first may have met a gateway that was down, not one that refuses
   * the subprotocol. The next attempt gives the subprotocol one more chance (once per client),
   * so a tab that loaded during an outage does not put its tokens in URLs for good.
   */
  private subprotocolRetried = false;
  private socketUsesSubprotocol = false;
  private socketOpen = false;
  /** The gateway has answered on the open socket (see {@link PulseClient.onAccepted}). */
  private accepted = false;
  /** When the gateway took the open socket, by the monotonic clock. */
  private liveSince = 0;
  private expiresAt: number | undefined;
  private stopWatchingNetwork: (() => void) | undefined;
  private current: ConnectionStatus;

  /** Creates a client; nothing happens until {@link PulseClient.start}. */
  constructor(options: PulseClientOptions) {
    if (typeof options.getTicket !== "function") throw new TypeError("getTicket is required");
    this.getTicket = options.getTicket;
    this.Socket = options.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
    this.timers = options.timers ?? globalTimers;
    this.now = options.now ?? globalNow;
    // A client given its own wall clock (tests, a simulated time) measures its waits by it too,
    // unless given a monotonic one as well.
    this.monotonic = options.monotonicNow ?? options.now ?? globalMonotonicNow;
    this.random = options.random ?? Math.random;
    this.network = options.network ?? browserNetwork();
    this.visibility = options.visibility ?? browserVisibility();
    this.backoff = new Backoff({
      baseMs: options.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS,
      capMs: options.backoffCapMs ?? DEFAULT_BACKOFF_CAP_MS,
      random: this.random,
    });
    this.restartJitterMs = options.restartJitterMs ?? DEFAULT_RESTART_JITTER_MS;
    this.backoffCapMs = options.backoffCapMs ?? DEFAULT_BACKOFF_CAP_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.renewAt = options.renewAt ?? DEFAULT_RENEW_AT;
    this.renewRetryMs = options.renewRetryMs ?? DEFAULT_RENEW_RETRY_MS;
    this.stableAfterMs = options.stableAfterMs ?? DEFAULT_STABLE_AFTER_MS;
    this.subscribeTimeoutMs = options.subscribeTimeoutMs ?? DEFAULT_SUBSCRIBE_TIMEOUT_MS;
    this.bus = options.bus ?? createPulseBus();
    if (options.onHandlerError) this.bus.onHandlerError = options.onHandlerError;

    this.retryTimer = new TimerSlot(this.timers);
    this.connectTimer = new TimerSlot(this.timers);
    this.renewTimer = new TimerSlot(this.timers);
    this.authResendTimer = new TimerSlot(this.timers);
    this.pacer = new Pacer({ now: this.monotonic });
    this.heartbeat = new Heartbeat({
      timers: this.timers,
      now: this.monotonic,
      intervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
      timeoutMs: options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
      sendPing: () => this.send({ action: "ping" }),
      onTimeout: () => this.onHeartbeatTimeout(),
    });
    if (options.poll) {
      this.fallback = new FallbackPoller({
        poll: options.poll,
        publish: (message) => this.publishPolled(message),
        events: () => this.eventPositions(),
        timers: this.timers,
        thresholdMs: options.fallbackThresholdMs ?? DEFAULT_FALLBACK_THRESHOLD_MS,
        intervalMs: options.fallbackIntervalMs ?? DEFAULT_FALLBACK_INTERVAL_MS,
        onError: (error) => this.report(error),
        onChange: (polling) => this.onPollingChange(polling),
        onSuccess: (startedAt) => this.onPollSucceeded(startedAt),
        now: this.now,
      });
    }
    this.current = { state: "offline", reason: "closed", polling: false, since: this.now() };
  }

  /** The connection state right now. */
  get state(): ConnectionState {
    return this.current.state;
  }

  /** The full connection status right now (frozen; what the `connection` topic last carried). */
  get status(): ConnectionStatus {
    return this.current;
  }

  /** True while REST fallback polling is active. */
  get polling(): boolean {
    return this.current.polling;
  }

  /** Expiry of the current token (unix seconds), as the ticket or the gateway last stated it. */
  get tokenExpiresAt(): number | undefined {
    return this.expiresAt;
  }

  /** The channels held right now, each once. */
  get channels(): Channel[] {
    return [...this.holdings.values()].map((h) => normalizeChannel(h.channel));
  }

  /**
   * Connects, and keeps connecting until {@link PulseClient.close}. Calling it while already
   * started does nothing; after `close()` or a 4003 it starts over.
   */
  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.backoff.reset();
    // What the browser says of the network is believed again: what disproved it is past.
    this.offlineDisproved = false;
    this.stopWatchingNetwork = this.network.watch((online) => this.onNetworkChange(online));
    this.stopWatchingVisibility = this.visibility.watchVisible(() => this.onVisible());
    this.update({ state: "connecting", polling: this.polling, since: this.now() });
    // A `connection` handler may have closed the client just now.
    if (!this.wanted) return;
    this.fallback?.disconnected();
    this.attempt();
  }

  /**
   * Closes the connection for good: no reconnects, no polling; the state becomes `offline`.
   * Held channels stay recorded and are subscribed again if {@link PulseClient.start} is called.
   */
  close(): void {
    if (!this.wanted && this.current.state === "offline") return;
    this.stop();
    this.fallback?.stop();
    this.update({ state: "offline", reason: "closed", polling: false, since: this.now() });
  }

  /**
   * Holds `channel`. The first holder makes the client subscribe on the gateway (now if live,
   * else as soon as it is); the subscription is restored after every reconnect.
   *
   * @returns a function that releases this hold; when the last hold of a channel is released
   *   the client unsubscribes from it.
   * @throws TypeError when the channel is unknown or its id breaks the id rule.
   */
  subscribe(channel: Channel): Release {
    const topic = channelTopic(channel);
    const holding = this.holdings.get(topic);
    if (holding) {
      holding.count += 1;
    } else {
      const normalized = normalizeChannel(channel);
      const added: Holding = {
        channel: normalized,
        count: 1,
        acknowledged: false,
        unanswered: 0,
        since: undefined,
        status: Object.freeze({ channel: normalized, state: "pending", since: this.now() }),
        timer: new TimerSlot(this.timers),
        backoff: new Backoff({ baseMs: 1_000, capMs: 30_000, random: this.random }),
        queued: false,
        refused: false,
      };
      this.holdings.set(topic, added);
      this.bus.publish("subscription", added.status);
      // Held again before the gateway answered its unsubscribe: the gateway may still hold the
      // channel (the unsubscribe waits for its slot, or a `rate_limited` dropped it), and would
      // acknowledge a subscribe as a repeat, without the current value this holder needs. The
      // subscribe follows the unsubscribe's answer (see `onUnsubscribed`).
      if (this.socketOpen && !this.unsubscribing.has(topic)) this.subscribeInTurn(topic, added);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(topic);
    };
  }

  /**
   * Holds `channel` and calls `handler` with its messages. For snapshot channels the newest
   * snapshot already received, if any, is delivered at once. For an events channel,
   * {@link PulseClient.watchEvents} also hears when events were missed.
   *
   * @returns a function that removes the handler and releases the hold.
   * @throws TypeError when the channel is unknown or its id breaks the id rule.
   */
  watch<C extends Channel>(channel: C, handler: Handler<ChannelMessage<C>>): Release {
    const topic = channelTopic(channel) as PulseTopic;
    const off = this.bus.on(topic, handler as Handler<PulseTopics[typeof topic]>);
    const release = this.subscribe(channel);
    if (isSnapshotTopic(topic)) {
      const latest = this.latestSnapshots.get(topic);
      if (latest) this.bus.deliver(topic, handler as Handler<SnapshotMessage>, latest);
    }
    return () => {
      off();
      release();
    };
  }

  /**
   * Holds the events channel of `topic`: `onEvent` gets its events, each once and in order, and
   * `onReset` hears when some were missed. Prefer it to `watch` for events: whatever the events
   * drive must be refetched after a reset, or it silently drifts.
   *
   * @returns a function that removes both handlers and releases the hold.
   * @throws TypeError when `topic` breaks the id rule.
   */
  watchEvents(topic: string, handlers: EventsHandlers): Release {
    const channel: Channel = { type: "events", topic };
    const eventsTopic = channelTopic(channel) as EventsTopic;
    const offEvent = this.bus.on(eventsTopic, handlers.onEvent);
    const offReset = this.bus.on(eventsResetTopic(topic), handlers.onReset);
    const release = this.subscribe(channel);
    return () => {
      offEvent();
      offReset();
      release();
    };
  }

  /**
   * The `seq` of the last event delivered on event topic `topic` (without the `events:` prefix),
   * or the baseline the gateway named when it was subscribed; `undefined` when neither is known
   * or the topic is not held.
   */
  lastEventSeq(topic: string): number | undefined {
    return this.seq.position(`events:${topic}`);
  }

  /** Shorthand for `client.bus.on(topic, handler)`. */
  on<K extends PulseTopic>(topic: K, handler: Handler<PulseTopics[K]>): Unsubscribe {
    return this.bus.on(topic, handler);
  }

  /** The newest snapshot received on a held snapshot topic (`alerts`, `fleet`, `telemetry:<id>`). */
  latest<K extends SnapshotTopic>(topic: K): PulseTopics[K] | undefined {
    return this.latestSnapshots.get(topic) as PulseTopics[K] | undefined;
  }

  // ---- connection life cycle ------------------------------------------------------------------

  /** Drops the socket and every timer; leaves the fallback and the state to the caller. */
  private stop(): void {
    this.wanted = false;
    this.generation += 1;
    this.retryTimer.clear();
    this.dropSocket(CloseCode.NORMAL, "client closed");
    this.stopWatchingNetwork?.();
    this.stopWatchingNetwork = undefined;
    this.stopWatchingVisibility?.();
    this.stopWatchingVisibility = undefined;
  }

  /**
   * Makes a connection attempt. While the browser says it is offline only one it asks for
   * `evenOffline` is made (the longest backoff's, or the tab shown, or a poll that succeeded);
   * any other goes back to waiting for the network.
   */
  private attempt(evenOffline = false): void {
    if (!this.wanted) return;
    this.retryTimer.clear();
    if (!evenOffline && this.networkDown()) {
      this.goNetworkOffline();
      return;
    }
    this.dropSocket(CloseCode.NORMAL, "reconnecting");
    const generation = ++this.generation;
    this.update({ ...this.current, nextAttemptAt: undefined });
    const { promise: ticketPromise, abort } = this.requestTicket();
    // One deadline for the whole attempt starts with the ticket request; the socket has
    // what the ticket left of it.
    const deadline = this.monotonic() + this.connectTimeoutMs;
    this.connectTimer.set(() => {
      if (generation !== this.generation || this.socket) return;
      abort();
      this.failAttempt({
        kind: "ticket_failed",
        message: `the ticket request did not answer within ${this.connectTimeoutMs} ms`,
      });
    }, this.connectTimeoutMs);
    ticketPromise.then(
      (raw) => {
        if (generation !== this.generation || !this.wanted) return;
        // The token's lifetime runs from here, however long the socket then takes to open.
        const received = { at: this.monotonic(), wallAt: this.now() };
        this.connectTimer.clear();
        let ticket: Ticket;
        try {
          ticket = parseTicket(raw);
        } catch (error) {
          this.failAttempt({ kind: "ticket_failed", message: `unusable ticket: ${describe(error)}`, cause: error });
          return;
        }
        // Read against the wall clock only when the ticket tells nothing but its `expires_at`;
        // from here on the lifetime is counted on the monotonic clock.
        const lifetime: TokenLifetime = { receivedAt: received.at, ms: ticketLifetimeMs(ticket, received.wallAt) };
        this.open(ticket, generation, lifetime, deadline);
      },
      (error: unknown) => {
        if (generation !== this.generation || !this.wanted) return;
        this.connectTimer.clear();
        this.failAttempt({ kind: "ticket_failed", message: `could not get a ticket: ${describe(error)}`, cause: error });
      },
    );
  }

  /**
   * Asks for a ticket with an abort handle, whatever `getTicket` throws or returns. The request
   * is aborted too when the socket it is for is dropped (`close()`, the network gone, a new
   * attempt): nothing would use its answer, and the app's fetcher must not act on it.
   */
  private requestTicket(): { promise: Promise<Ticket>; abort: () => void } {
    const controller = typeof AbortController === "function" ? new AbortController() : undefined;
    let promise: Promise<Ticket>;
    try {
      promise = Promise.resolve(this.getTicket(controller?.signal));
    } catch (error) {
      promise = Promise.reject(error);
    }
    if (controller) {
      this.ticketRequests.add(controller);
      const settled = () => this.ticketRequests.delete(controller);
      promise.then(settled, settled);
    }
    return { promise, abort: () => controller?.abort() };
  }

  private open(ticket: Ticket, generation: number, lifetime: TokenLifetime, deadline: number): void {
    const avoid = this.avoidUrl;
    this.avoidUrl = undefined;
    let url: string;
    let socket: SocketLike;
    try {
      if (!this.Socket) throw new Error("no WebSocket implementation available");
      url = pickGateway(ticket.gateways, this.random, avoid);
      const protocols = this.ticketInUrl ? undefined : ticketProtocols(ticket.token);
      socket = protocols ? new this.Socket(url, protocols) : new this.Socket(withToken(url, ticket.token));
      this.socketUsesSubprotocol = protocols !== undefined;
    } catch (error) {
      this.failAttempt({ kind: "connect_failed", message: `could not open a WebSocket: ${describe(error)}`, cause: error });
      return;
    }
    this.socket = socket;
    this.socketUrl = url;
    this.socketOpen = false;
    this.expiresAt = ticket.expires_at;
    socket.onopen = () => {
      if (this.socket === socket && generation === this.generation) this.onOpen(lifetime);
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.onFrame(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.onClose(event.code, event.reason);
    };
    socket.onerror = () => {
      // A close event always follows; the close code says what happened.
    };
    this.connectTimer.set(() => {
      if (this.socket !== socket || this.socketOpen) return;
      this.dropSocket(CloseCode.NORMAL, "connect timeout");
      this.avoidUrl = url;
      this.failAttempt({
        kind: "connect_timeout",
        message: `the gateway did not answer within the attempt's ${this.connectTimeoutMs} ms`,
      });
    }, Math.max(0, deadline - this.monotonic()));
  }

  private onOpen(lifetime: TokenLifetime): void {
    this.connectTimer.clear();
    this.socketOpen = true;
    this.accepted = false;
    if (this.socketUsesSubprotocol) {
      this.subprotocolWorks = true;
    } else if (!this.subprotocolWorks && !this.subprotocolRetried) {
      this.subprotocolRetried = true;
      this.ticketInUrl = false;
    }
    // A new connection starts with the gateway's whole burst; past it the subscribes are paced.
    this.pacer.reset();
    // Event topics a gateway took before without a position to resume from: whatever happened
    // meanwhile cannot be replayed, so their subscribers must refetch. A subscribe no gateway
    // answered (a socket closed right after the upgrade: 4001, 4029, 1012) delivered nothing, so
    // nothing was missed since.
    const unresumable: string[] = [];
    for (const [topic, holding] of this.holdings) {
      if (holding.channel.type === "events" && holding.acknowledged && this.seq.resumeAfter(topic) === undefined) {
        unresumable.push(holding.channel.topic);
      }
      this.subscribeInTurn(topic, holding);
    }
    this.heartbeat.start();
    // The gateway refuses a token or a capped connection right after the upgrade, with a close
    // code: the connection is live once the gateway has answered on it, and a ping makes sure
    // something answers however little the client subscribed to.
    this.heartbeat.pingNow();
    this.tokenEndsAt = lifetime.receivedAt + lifetime.ms;
    this.scheduleRenewal(lifetime);
    for (const topic of unresumable) {
      if (this.holdings.has(`events:${topic}`)) this.announceReset({ topic, oldest: null, reason: "gap", last: null });
    }
  }

  /** The gateway answered on the open socket: it took the connection. */
  private onAccepted(): void {
    this.accepted = true;
    this.liveSince = this.monotonic();
    // The browser may say it is offline: this connection shows it is wrong.
    if (!this.network.isOnline()) this.offlineDisproved = true;
    this.update({ state: "live", polling: this.polling, since: this.now() });
    this.reconsiderFallback();
  }

  /**
   * While live, REST polling stands in for the held channels the gateway refuses for now
   * (`retrying`: `unavailable` while its NATS link is down, say), or their widgets would get
   * nothing until it takes them: it starts a threshold after one is refused and stops once none
   * is. Polled data of a channel subscribed live is not delivered (see `publishPolled`). A
   * channel refused for good (`failed`) is not polled for: REST would refuse it too.
   */
  private reconsiderFallback(): void {
    // A dropped socket's channels go back to `pending` before the state says so: the socket's
    // loss, not their change, decides then.
    if (!this.fallback || !this.wanted || !this.socketOpen || this.current.state !== "live") return;
    const refused = [...this.holdings.values()].some((h) => h.refused);
    if (refused) this.fallback.disconnected();
    else this.fallback.connected();
  }

  /** Whether `topic`'s data comes live: the socket is live and the gateway took the channel. */
  private servedLive(topic: DataTopic): boolean {
    return this.current.state === "live" && this.holdings.get(topic)?.status.state === "subscribed";
  }

  private onClose(code: number, reason: string): void {
    const wasStable = this.wasStable();
    const neverOpened = !this.socketOpen;
    this.dropSocket();
    if (code === CloseCode.FORBIDDEN) {
      this.stop();
      this.fallback?.stop();
      const error: ClientError = {
        kind: "forbidden",
        message: `the gateway refused this token (4003${reason ? `: ${quote(reason)}` : ""})`,
        code,
      };
      this.report(error);
      this.update({ state: "offline", reason: "forbidden", closeCode: code, error, polling: false, since: this.now() });
      return;
    }
    if (wasStable) {
      this.backoff.reset();
      this.freshRestarts = 0;
    }
    if (CLIENT_FAULTS.has(code)) {
      // Our own fault: report it, and do not hammer the gateway with the same mistake.
      this.report({
        kind: "protocol_violation",
        message: `the gateway refused what this client sent (${code}${reason ? `: ${quote(reason)}` : ""})`,
        code,
      });
      // The longest backoff, and up to half of it again: clients refused together (a limit
      // lowered under them) must not all come back at the same instant every time.
      const spread = Math.floor(this.clampedRandom() * (this.backoffCapMs / 2));
      this.scheduleServerWait(this.backoffCapMs + spread, code);
      return;
    }
    if (code === CloseCode.RATE_LIMITED) {
      // Wait at least what the gateway asks, and try another gateway first.
      const hintMs = retryAfterMs(reason);
      this.avoidUrl = this.socketUrl;
      this.report({
        kind: "rate_limited",
        message: `the gateway is limiting this client (4029${reason ? `: ${quote(reason)}` : ""})`,
        code,
      });
      // On top of the hint, not within it: clients refused together (a cap reached after a
      // failover) would otherwise all come back at the same instant, and be refused again.
      this.scheduleServerWait(hintMs + this.backoff.next(), code);
      return;
    }
    if (code === CloseCode.SERVICE_RESTART) {
      // The gateway is draining: come back at once, spread over a short window, elsewhere.
      // But a second 1012 in a row on a connection just made (gateways still draining, or
      // one that drains as it accepts) is backed off like any other failure.
      this.avoidUrl = this.socketUrl;
      this.freshRestarts = wasStable ? 1 : this.freshRestarts + 1;
      const jitter = Math.floor(this.clampedRandom() * this.restartJitterMs);
      this.scheduleRetry(this.freshRestarts > 1 ? Math.max(jitter, this.backoff.next()) : jitter, code);
    } else {
      // A gateway that could not even be reached is likely down: try another one next. It may
      // also be one that does not take the ticket as a subprotocol: alternate the two ways.
      if (neverOpened) {
        this.avoidUrl = this.socketUrl;
        if (code === CloseCode.ABNORMAL && !this.subprotocolWorks) this.ticketInUrl = !this.ticketInUrl;
      }
      // 4001 included: every attempt fetches a fresh ticket first.
      this.scheduleRetry(this.backoff.next(), code);
    }
  }

  private onHeartbeatTimeout(): void {
    if (!this.socketOpen) return;
    const wasStable = this.wasStable();
    this.dropSocket(CloseCode.NORMAL, "heartbeat timeout");
    if (wasStable) this.backoff.reset();
    this.report({ kind: "heartbeat_timeout", message: "nothing arrived from the gateway in time; reconnecting" });
    this.scheduleRetry(this.backoff.next(), CloseCode.ABNORMAL);
  }

  /** True when the current socket is open and has been for long enough to reset the backoff. */
  private wasStable(): boolean {
    return this.socketOpen && this.accepted && this.monotonic() - this.liveSince >= this.stableAfterMs;
  }

  /** An attempt failed before the socket opened: retry with backoff. */
  private failAttempt(error: ClientError): void {
    this.report(error);
    this.scheduleRetry(this.backoff.next(), undefined, error);
  }

  /** A retry after a wait the gateway asked for (4029) or earned (1002, 1003, 1007, 1009): coming back to
   * the tab or to the network does not cut it short. */
  private scheduleServerWait(delayMs: number, closeCode: number): void {
    this.serverWaitUntil = this.monotonic() + delayMs;
    this.scheduleRetry(delayMs, closeCode);
  }

  private scheduleRetry(delayMs: number, closeCode?: number, error?: ClientError): void {
    if (!this.wanted) return;
    // An attempt made although the browser says it is offline failed: back to waiting for the
    // network (and the longest backoff), without showing `reconnecting` at every try.
    if (this.networkDown()) {
      this.goNetworkOffline();
      return;
    }
    this.generation += 1;
    this.fallback?.disconnected();
    const status: ConnectionStatus = {
      state: "reconnecting",
      polling: this.polling,
      since: this.current.state === "reconnecting" ? this.current.since : this.now(),
      nextAttemptAt: this.now() + delayMs,
    };
    if (closeCode !== undefined) status.closeCode = closeCode;
    if (error) status.error = error;
    // Arm the timer first: a `connection` handler may call close(), which must be able to clear it.
    this.retryTimer.set(() => this.attempt(), delayMs);
    this.update(status);
  }

  /** Forgets the current socket (closing it when asked) and everything tied to it. */
  private dropSocket(code?: number, reason?: string): void {
    const socket = this.socket;
    this.socket = undefined;
    this.socketOpen = false;
    for (const request of this.ticketRequests) request.abort();
    this.ticketRequests.clear();
    this.connectTimer.clear();
    this.renewTimer.clear();
    this.heartbeat.stop();
    // Requests of this socket are moot on the next one, which holds nothing until asked.
    this.authInFlight = undefined;
    this.authResendTimer.clear();
    for (const unsubscribing of this.unsubscribing.values()) unsubscribing.timer.clear();
    this.unsubscribing.clear();
    // Held subscriptions wait for the next socket.
    for (const holding of this.holdings.values()) {
      holding.timer.clear();
      holding.queued = false;
      holding.unanswered = 0;
      if (holding.status.state !== "pending") this.setSubscription(holding, { state: "pending" });
    }
    if (!socket) return;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    if (code !== undefined) {
      try {
        socket.close(code, reason);
      } catch {
        // Already closing or closed.
      }
    }
  }

  private onNetworkChange(online: boolean): void {
    if (!this.wanted) return;
    // The browser's view changed: believe it again.
    this.offlineDisproved = false;
    if (!online) {
      this.goNetworkOffline();
      return;
    }
    // A try made while the browser said it was offline, still under way: the attempt scheduled
    // below replaces it.
    if (this.current.state === "offline") this.dropSocket(CloseCode.NORMAL, "network back");
    if (this.monotonic() < this.serverWaitUntil) {
      // The gateway asked for a wait: the network coming back does not cut it short.
      if (!this.retryTimer.pending || this.current.state === "offline") {
        this.scheduleRetry(this.serverWaitUntil - this.monotonic());
      }
    } else if (this.current.state === "offline" || this.retryTimer.pending) {
      // The network is back: try soon rather than wait out the backoff, within a short random
      // window, so that the dashboards of one network that recovers do not all come back (and
      // ask for tickets) at the same instant. A network that flaps, back again within
      // `stableAfterMs`, keeps its backoff growing.
      const flapping = this.monotonic() - this.networkBackAt < this.stableAfterMs;
      this.networkBackAt = this.monotonic();
      if (!flapping) this.backoff.reset();
      if (this.current.state === "offline") {
        this.update({ state: "reconnecting", polling: this.polling, since: this.now() });
      }
      this.scheduleRetry(flapping ? this.backoff.next() : Math.floor(this.clampedRandom() * this.restartJitterMs));
    }
  }

  /**
   * The tab is shown again: check a live socket now, or stop waiting out a long backoff; also
   * while the browser says it is offline, in case it is wrong.
   */
  private onVisible(): void {
    if (!this.wanted) return;
    if (this.socket && this.socketOpen) {
      this.heartbeat.pingNow();
    } else if (this.retryTimer.pending && this.monotonic() >= this.serverWaitUntil) {
      this.attempt(true);
    }
  }

  /**
   * A fallback poll got through: the network works. While the browser says it is offline, it is
   * wrong: try the socket now rather than at the longest backoff.
   */
  private onPollSucceeded(startedAt: number): void {
    this.bus.publish("polled", { startedAt });
    if (!this.wanted || this.network.isOnline()) return;
    this.offlineDisproved = true;
    if (this.current.state === "offline" && this.retryTimer.pending && this.monotonic() >= this.serverWaitUntil) {
      this.attempt();
    }
  }

  /** The browser says it is offline, and nothing since showed it wrong. */
  private networkDown(): boolean {
    return !this.offlineDisproved && !this.network.isOnline();
  }

  private onPollingChange(polling: boolean): void {
    if (this.wanted) {
      this.update({ ...this.current, polling });
    } else {
      // Stopping: the offline status that follows carries the change.
      this.current = Object.freeze({ ...this.current, polling });
    }
  }

  private goNetworkOffline(): void {
    this.generation += 1;
    this.retryTimer.clear();
    this.dropSocket(CloseCode.NORMAL, "network offline");
    // Polling goes on: `navigator.onLine` can be wrong, and a poll that fails costs nothing.
    this.fallback?.disconnected();
    // And so the socket is still tried, as after the longest backoff (or a wait the gateway
    // asked for, if longer), spread so that the clients of one office network do not all try
    // at once: some browsers read `navigator.onLine` false on a network that works, and never
    // fire `online`. Sooner when a poll succeeds or the tab is shown. Armed before the status
    // is published: a `connection` handler may close or start the client again.
    const spread = Math.floor(this.clampedRandom() * (this.backoffCapMs / 2));
    const wait = Math.max(this.backoffCapMs + spread, this.serverWaitUntil - this.monotonic());
    this.retryTimer.set(() => this.attempt(true), wait);
    const nextAttemptAt = this.now() + wait;
    if (this.current.state !== "offline") {
      this.update({ state: "offline", reason: "network", polling: this.polling, since: this.now(), nextAttemptAt });
    } else if (this.current.nextAttemptAt !== nextAttemptAt) {
      this.update({ ...this.current, nextAttemptAt });
    }
  }

  // ---- token renewal ---------------------------------------------------------------------------

  /**
   * Arms the renewal of a token at `renewAt` of its lifetime, counted from when its ticket
   * arrived (by the monotonic clock). Timed by the token's lifetime, not by comparing
   * `expires_at` with this clock: a browser whose clock is behind the server's would renew after
   * the token expired. And counted from the ticket, not from the socket opening: the time the
   * socket took to open has gone from the token's life too, and a short token would otherwise
   * expire before it is renewed. A renewal already due goes out at once.
   */
  private scheduleRenewal(lifetime: TokenLifetime): void {
    const dueAt = lifetime.receivedAt + Math.max(MIN_RENEW_DELAY_MS, lifetime.ms * this.renewAt);
    this.renewTimer.set(() => this.renew(), dueAt - this.monotonic());
  }

  private renew(): void {
    const socket = this.socket;
    if (!socket || !this.socketOpen) return;
    const { promise: ticketPromise, abort } = this.requestTicket();
    let settled = false;
    const failed = (message: string, cause?: unknown) => {
      settled = true;
      if (this.socket !== socket || !this.socketOpen) return;
      this.report({ kind: "renew_failed", message, cause });
      this.renewAgain();
    };
    // A renewal that hangs is given up like a failed one, and tried again: within half the
    // token's remaining life, so that the next try has the other half.
    const hangMs = Math.max(MIN_RENEW_DELAY_MS, Math.min(this.connectTimeoutMs, (this.tokenEndsAt - this.monotonic()) / 2));
    this.renewTimer.set(() => {
      if (settled) return;
      abort();
      failed(`the ticket request did not answer within ${Math.round(hangMs)} ms`);
    }, hangMs);
    ticketPromise
      .then((raw) => parseTicket(raw))
      .then(
        (ticket) => {
          if (settled) return;
          settled = true;
          if (this.socket !== socket || !this.socketOpen) return;
          const lifetime: TokenLifetime = { receivedAt: this.monotonic(), ms: ticketLifetimeMs(ticket, this.now()) };
          this.sendAuth(ticket.token, lifetime.receivedAt + lifetime.ms);
          this.scheduleRenewal(lifetime);
        },
        (error: unknown) => {
          if (settled) return;
          failed(`could not renew the token: ${describe(error)}`, error);
        },
      );
  }

  /**
   * Renews again after `renewRetryMs`, or sooner: at the latest {@link RENEW_LAST_TRY_MS} before
   * the current token expires, since by then the gateway has closed the connection; and never
   * sooner than {@link MIN_RENEW_DELAY_MS}.
   */
  private renewAgain(): void {
    const left = this.tokenEndsAt - this.monotonic();
    // Never at once: a ticket endpoint failing fast would otherwise be asked in a loop.
    this.renewTimer.set(() => this.renew(), Math.max(MIN_RENEW_DELAY_MS, Math.min(this.renewRetryMs, left - RENEW_LAST_TRY_MS)));
  }

  /**
   * Sends a renewed token (expiring at `expiresAt` by the monotonic clock), remembered until the
   * gateway answers: a rate limit may drop it.
   */
  private sendAuth(token: string, expiresAt: number): void {
    this.authInFlight = token;
    this.authExpiresAt = expiresAt;
    this.authResendTimer.clear();
    this.send({ action: "auth", token });
  }

  /** The gateway answered the renewal (`authenticated` or `invalid_token`): nothing to re-send. */
  private onAuthAnswered(): void {
    this.authInFlight = undefined;
    this.authResendTimer.clear();
  }

  // ---- frames ----------------------------------------------------------------------------------

  private onFrame(data: unknown): void {
    this.heartbeat.seen();
    if (!this.accepted) this.onAccepted();
    const frame = parseServerFrame(data);
    switch (frame.kind) {
      case "data":
        this.onData(frame.message);
        return;
      case "reply":
        this.onReply(frame.reply);
        return;
      case "unknown":
        this.report({ kind: "unknown_message", message: `unknown message type ${JSON.stringify(quote(frame.type))}`, data: frame.value });
        return;
      case "malformed": {
        const channel = frame.topic === undefined ? undefined : this.holdings.get(frame.topic)?.channel;
        this.report({
          kind: "malformed_message",
          message: `malformed message: ${frame.reason}`,
          data: typeof data === "string" ? quote(data) : data,
          ...(channel ? { channel } : {}),
        });
        return;
      }
    }
  }

  private onData(message: DataMessage): void {
    const topic = messageTopic(message);
    // A message still in flight for a channel released a moment ago.
    if (!this.holdings.has(topic)) return;
    if (message.type === "event") {
      this.deliverEvent(topic as EventsTopic, message);
      return;
    }
    if (isSnapshotTopic(topic)) {
      if (!this.seq.acceptSnapshot(topic, message.seq)) return;
      this.latestSnapshots.set(topic, message as SnapshotMessage);
    }
    this.publishData(topic, message);
  }

  /**
   * Delivers an event of a held topic unless it is a duplicate. An event whose `seq` skips some
   * is announced as a reset first, so that subscribers refetch what the missed ones drove.
   */
  private deliverEvent(topic: EventsTopic, message: EventMessage): void {
    const before = this.seq.position(topic);
    const verdict = this.seq.acceptEvent(topic, message.seq);
    if (verdict === "duplicate") return;
    if (verdict === "gap") {
      this.announceReset({ topic: message.topic, oldest: message.seq, reason: "gap", last: before ?? null });
      // A reset handler may have let go of the channel.
      if (!this.holdings.has(topic)) return;
    }
    this.publishData(topic, message);
  }

  private onReply(reply: ServerReply): void {
    switch (reply.type) {
      case "authenticated":
        this.expiresAt = reply.exp;
        this.tokenEndsAt = this.authExpiresAt;
        this.onAuthAnswered();
        return;
      case "subscribed": {
        const holding = this.holdingOf(reply);
        if (holding) {
          this.onSubscribeAnswered(holding);
          // A subscribe asked again may still wait for its slot (the answer came late): the
          // gateway holds the channel now, so that one is not sent, and a release unsubscribes.
          holding.timer.clear();
          holding.queued = false;
          holding.backoff.reset();
          holding.refused = false;
          holding.acknowledged = true;
          this.setSubscription(holding, { state: "subscribed" });
        }
        if (reply.channel === "events" && reply.seq !== undefined) this.onEventsBaseline(reply.topic, reply.seq);
        return;
      }
      case "unsubscribed":
        this.onUnsubscribed(reply);
        return;
      case "events_reset":
        this.onEventsReset(reply.topic, reply.oldest, reply.reason);
        return;
      case "error": {
        this.report({ kind: "server_error", message: reply.message || reply.code, code: reply.code, data: reply });
        if (reply.channel && reply.code === "not_subscribed") {
          // An answer all the same: the gateway does not hold the channel.
          this.onUnsubscribed(reply.channel, false);
        } else if (reply.channel && reply.code !== "invalid_since") {
          this.onSubscribeRefused(reply.channel, reply.code, reply.message);
        } else if (reply.code === "rate_limited") {
          this.onRequestsDropped({ code: reply.code, message: reply.message });
        }
        const renewalRefused = reply.code === "invalid_token";
        // Without a channel, `unavailable` answers the renewal in flight: the gateway could not
        // verify the token just then.
        const renewalUnverified = reply.code === "unavailable" && !reply.channel && this.authInFlight !== undefined;
        if ((renewalRefused || renewalUnverified) && this.socketOpen) {
          // The renewal did not take; the current token stays in force until it expires.
          this.onAuthAnswered();
          this.renewAgain();
        } else if (reply.code === "invalid_since" && reply.channel?.channel === "events") {
          const holding = this.holdingOf(reply.channel);
          if (holding) this.onSubscribeAnswered(holding);
          this.resubscribeFresh(reply.channel.topic);
        }
        return;
      }
      default:
        // pong: the heartbeat already noted that the socket lives.
        return;
    }
  }

  /** `subscribed` named the topic's newest `seq`: the baseline, unless the client is past it. */
  private onEventsBaseline(name: string, seq: number): void {
    const topic: EventsTopic = `events:${name}`;
    const holding = this.holdings.get(topic);
    if (!holding) return;
    const before = this.seq.position(topic);
    if (this.seq.acceptBaseline(topic, seq, holding.since) === "gap") {
      this.announceReset({ topic: name, oldest: seq + 1, reason: "gap", last: before ?? null });
    }
  }

  /** The gateway could not deliver every event since the position: subscribers must refetch. */
  private onEventsReset(name: string, oldest: number | null, reason: string): void {
    const topic: EventsTopic = `events:${name}`;
    if (!this.holdings.has(topic)) return;
    const last = this.seq.position(topic) ?? null;
    this.seq.resetEvents(topic, oldest);
    this.announceReset({ topic: name, oldest, reason, last });
  }

  /**
   * The gateway refused the `since` of a resubscription (which should not happen): start the
   * topic over without one, and have its subscribers refetch.
   */
  private resubscribeFresh(name: string): void {
    const topic: EventsTopic = `events:${name}`;
    const holding = this.holdings.get(topic);
    if (!holding || !this.socketOpen) return;
    const last = this.seq.position(topic) ?? null;
    this.seq.forget(topic);
    this.sendSubscribe(topic, holding);
    this.announceReset({ topic: name, oldest: null, reason: "gap", last });
  }

  private announceReset(reset: EventsReset): void {
    this.bus.publish(eventsResetTopic(reset.topic), Object.freeze(reset));
  }

  /**
   * A message from a fallback poll. Snapshots skip the `seq` check (REST bodies carry `seq` 0);
   * events carry their real `seq` and go through the same checks as pushed ones, so the socket
   * resumes after the last event polled.
   */
  private publishPolled(message: DataMessage): void {
    if ((message as { type?: unknown }).type === "event") {
      // REST bodies arrive unchecked, and an event's `seq` moves its topic's position.
      const frame = classifyValue(message);
      if (frame.kind !== "data" || frame.message.type !== "event") {
        const reason = frame.kind === "malformed" ? frame.reason : "not an event";
        this.report({ kind: "malformed_message", message: `malformed polled event: ${reason}`, data: message });
        return;
      }
      const topic = messageTopic(frame.message) as EventsTopic;
      if (this.holdings.has(topic) && !this.servedLive(topic)) this.deliverPolledEvent(topic, frame.message);
      return;
    }
    // Snapshots are passed on unchecked (their users check them), but the topic they go out on
    // is read from them: a body without one is reported, not thrown on.
    const { type, device_id: device } = message as { type?: unknown; device_id?: unknown };
    if (!(type === "alerts" || type === "fleet" || (type === "telemetry" && typeof device === "string"))) {
      this.report({ kind: "malformed_message", message: "malformed polled message: no snapshot type", data: message });
      return;
    }
    const topic = messageTopic(message);
    // A poll made while some channel was refused also reads the ones served live: theirs are older.
    if (this.servedLive(topic)) return;
    if (isSnapshotTopic(topic) && this.holdings.has(topic)) {
      this.latestSnapshots.set(topic, message as SnapshotMessage);
      this.seq.polledSnapshot(topic);
    }
    this.publishData(topic, message);
  }

  /**
   * Delivers a polled event. A topic a gateway took without telling its position (a `subscribed`
   * without `seq`, and no event before the socket dropped) cannot place the event:
   * events between the subscribe and it may have been missed (a poll with no position fetches
   * only the newest), so a reset is announced first, as when such a topic is subscribed again.
   * Taken silently, the event would become the position and the socket would resume after it.
   */
  private deliverPolledEvent(topic: EventsTopic, message: EventMessage): void {
    const holding = this.holdings.get(topic);
    if (holding?.acknowledged && this.seq.resumeAfter(topic) === undefined) {
      this.announceReset({ topic: message.topic, oldest: message.seq, reason: "gap", last: null });
      // A reset handler may have let go of the channel.
      if (!this.holdings.has(topic)) return;
    }
    this.deliverEvent(topic, message);
  }

  private publishData(topic: DataTopic, message: DataMessage): void {
    (this.bus.publish as (topic: string, payload: DataMessage) => number)(topic, message);
  }

  // ---- helpers ---------------------------------------------------------------------------------

  /**
   * Subscribes a held channel on the open socket; an event topic resumes from its position.
   * Unanswered within `subscribeTimeoutMs`, it is sent again.
   */
  private sendSubscribe(topic: DataTopic, holding: Holding): void {
    const since = holding.channel.type === "events" ? this.seq.resumeAfter(topic) : undefined;
    holding.unanswered += 1;
    holding.queued = false;
    holding.since = since;
    if (holding.status.state !== "pending") {
      // Asking again after a refusal keeps the refusal: the channel is still not updating, and
      // the reason stays on show until the gateway says yes.
      const refused = holding.status.state === "retrying" ? holding.status.error : undefined;
      this.setSubscription(holding, refused ? { state: "pending", error: refused } : { state: "pending" });
    }
    holding.timer.set(() => {
      if (this.holdings.get(topic) !== holding || !this.socketOpen) return;
      this.retrySubscribe(topic, holding, undefined);
    }, this.subscribeTimeoutMs);
    this.send(subscribeRequest(holding.channel, since));
  }

  /**
   * Subscribes a held channel when the pacing allows (see {@link Pacer}): at once within the
   * gateway's burst, else at the slot `wait` from now. A socket opening with hundreds of held
   * channels would otherwise send them all at once, have most refused with `rate_limited`, and
   * be closed with 4029. Until its slot the channel stays `pending`.
   */
  private subscribeInTurn(topic: DataTopic, holding: Holding, wait = this.pacer.reserve()): void {
    if (wait <= 0) {
      this.sendSubscribe(topic, holding);
      return;
    }
    holding.queued = true;
    holding.timer.set(() => {
      if (this.holdings.get(topic) === holding && this.socketOpen) this.sendSubscribe(topic, holding);
    }, wait);
  }

  /** The topic a reply names, if it names a valid channel. */
  private topicOf(ref: { channel: string; topic?: string; device_id?: string }): DataTopic | undefined {
    try {
      return channelTopic({ type: ref.channel, device_id: ref.device_id, topic: ref.topic } as unknown as Channel);
    } catch {
      return undefined;
    }
  }

  /** The held subscription a reply names, if any. */
  private holdingOf(ref: { channel: string; topic?: string; device_id?: string }): Holding | undefined {
    const topic = this.topicOf(ref);
    return topic === undefined ? undefined : this.holdings.get(topic);
  }

  /** A subscribe was refused: ask again after a backoff when the refusal may pass. */
  private onSubscribeRefused(ref: { channel: string; topic?: string; device_id?: string }, code: string, message: string): void {
    const holding = this.holdingOf(ref);
    if (!holding) return;
    this.onSubscribeAnswered(holding);
    const topic = channelTopic(holding.channel);
    const error = { code, message };
    if (isRetryableRefusal(code)) {
      // Its backoff replaces a subscribe still waiting for its slot.
      holding.queued = false;
      this.retrySubscribe(topic, holding, error);
    } else {
      holding.timer.clear();
      holding.queued = false;
      holding.refused = false;
      this.setSubscription(holding, { state: "failed", error });
    }
  }

  /**
   * The gateway answered one of the channel's subscribes on this socket. Answers name no request,
   * but the gateway answers each in turn, so the count of those still out goes down by one.
   */
  private onSubscribeAnswered(holding: Holding): void {
    holding.unanswered = Math.max(0, holding.unanswered - 1);
  }

  /**
   * Whether the gateway may hold the channel on this socket, so that releasing it must
   * unsubscribe: it acknowledged it, or a subscribe is out that it may still take (one left
   * unanswered and asked again is one). Not a channel refused (`retrying` after a refusal,
   * `failed`), nor one whose subscribe still waits for its slot: the gateway would answer the
   * unsubscribe `not_subscribed`.
   */
  private mayBeHeld(holding: Holding): boolean {
    return holding.status.state === "subscribed" || holding.unanswered > 0;
  }

  /**
   * The gateway dropped requests it had no room for (`rate_limited` names none): any request
   * not answered yet may be among them, so each is sent again after a second
   * ({@link RATE_LIMITED_RESEND_MS}, once the gateway has refilled), and then at the paced rate:
   * first a renewal's `auth` (else the token expires and the gateway closes with 4001), then
   * unsubscribes, then subscribes, rather than at a subscribe's answer deadline. One that was
   * answered meanwhile is simply answered again. Subscribes still waiting for their slot wait
   * behind them: the slots they held are void.
   */
  private onRequestsDropped(error: { code: string; message: string }): void {
    this.pacer.restartAfter(RATE_LIMITED_RESEND_MS);
    const token = this.authInFlight;
    if (token !== undefined) {
      this.authResendTimer.set(() => {
        if (this.authInFlight === token && this.socketOpen) this.send({ action: "auth", token });
      }, this.pacer.reserve());
    }
    for (const [topic, unsubscribing] of this.unsubscribing) this.unsubscribeInTurn(topic, unsubscribing.channel, this.pacer.reserve());
    for (const [topic, holding] of this.holdings) {
      if (holding.status.state !== "pending") continue;
      if (holding.queued) this.subscribeInTurn(topic, holding, this.pacer.reserve());
      else if (holding.unanswered > 0) this.retrySubscribe(topic, holding, error, { slot: this.pacer.reserve() });
    }
  }

  /**
   * Subscribes `holding` again after its backoff, then in turn with the other requests (many
   * refused together would otherwise all ask again within the same second, past the gateway's
   * rate); or at `slot`, a slot of the pacer already reserved for it.
   */
  private retrySubscribe(
    topic: DataTopic,
    holding: Holding,
    error: { code: string; message: string } | undefined,
    { slot }: { slot?: number } = {},
  ): void {
    const delay = slot ?? holding.backoff.next();
    const next: Partial<SubscriptionStatus> = { state: "retrying", nextAttemptAt: this.now() + delay };
    holding.refused = true;
    this.setSubscription(holding, error ? { ...next, error } : next);
    holding.timer.set(() => {
      if (this.holdings.get(topic) !== holding || !this.socketOpen) return;
      if (slot === undefined) this.subscribeInTurn(topic, holding);
      else this.sendSubscribe(topic, holding);
    }, delay);
  }

  private setSubscription(holding: Holding, change: Partial<SubscriptionStatus>): void {
    const status: SubscriptionStatus = { channel: holding.channel, state: change.state ?? holding.status.state, since: this.now() };
    if (change.error) (status as { error?: SubscriptionStatus["error"] }).error = change.error;
    if (change.nextAttemptAt !== undefined) (status as { nextAttemptAt?: number }).nextAttemptAt = change.nextAttemptAt;
    holding.status = Object.freeze(status);
    this.bus.publish("subscription", holding.status);
    this.reconsiderFallback();
  }

  /** Where a held channel stands on the gateway; `undefined` when it is not held. */
  subscriptionStatus(channel: Channel): SubscriptionStatus | undefined {
    return this.holdings.get(channelTopic(channel))?.status;
  }

  /** The held event topics and where each stands, for REST polling. */
  private eventPositions(): EventsPosition[] {
    const positions: EventsPosition[] = [];
    for (const [topic, holding] of this.holdings) {
      if (holding.channel.type === "events") {
        positions.push({ topic: holding.channel.topic, after: this.seq.resumeAfter(topic) ?? null });
      }
    }
    return positions;
  }

  private release(topic: DataTopic): void {
    const holding = this.holdings.get(topic);
    if (!holding) return;
    holding.count -= 1;
    if (holding.count > 0) return;
    this.holdings.delete(topic);
    holding.timer.clear();
    this.seq.forget(topic);
    this.reconsiderFallback();
    if (isSnapshotTopic(topic)) this.latestSnapshots.delete(topic);
    // Nothing to undo for a channel the gateway does not hold (see `mayBeHeld`), nor for one
    // whose unsubscribe is out already (it was held again before the answer, and not subscribed
    // since).
    if (this.socketOpen && this.mayBeHeld(holding) && !this.unsubscribing.has(topic)) this.unsubscribeInTurn(topic, holding.channel);
  }

  /**
   * Unsubscribes a released channel when the pacing allows, and remembers it until the gateway
   * answers (`unsubscribed`, or `not_subscribed`): a `rate_limited` error may have dropped it,
   * and the gateway would go on sending the channel's data. A channel held again meanwhile
   * subscribes once it is answered.
   */
  private unsubscribeInTurn(topic: DataTopic, channel: Channel, wait = this.pacer.reserve()): void {
    const unsubscribing = this.unsubscribing.get(topic) ?? { channel, timer: new TimerSlot(this.timers) };
    this.unsubscribing.set(topic, unsubscribing);
    const send = () => {
      if (this.unsubscribing.get(topic) === unsubscribing) this.send(unsubscribeRequest(channel));
    };
    if (wait <= 0) {
      unsubscribing.timer.clear();
      send();
    } else {
      unsubscribing.timer.set(send, wait);
    }
  }

  /** The gateway answered an unsubscribe; a channel held again meanwhile subscribes now. */
  private onUnsubscribed(ref: { channel: string; topic?: string; device_id?: string }, freed = true): void {
    const topic = this.topicOf(ref);
    if (topic === undefined || !this.unsubscribing.has(topic)) return;
    this.forgetUnsubscribe(topic);
    if (!this.socketOpen) return;
    const holding = this.holdings.get(topic);
    if (holding) {
      this.subscribeInTurn(topic, holding);
      return;
    }
    // A subscription freed on the connection (not a `not_subscribed`, which frees none): a
    // channel refused for want of one is asked again now, rather than at the next reconnect;
    // one already waiting for its slot to ask is not picked twice.
    if (!freed) return;
    for (const [refusedTopic, refused] of this.holdings) {
      if (refused.status.state === "failed" && !refused.queued && refused.status.error?.code === "too_many_subscriptions") {
        this.subscribeInTurn(refusedTopic, refused);
        return;
      }
    }
  }

  /** Stops tracking (and re-sending) the unsubscribe of `topic`, if one is pending. */
  private forgetUnsubscribe(topic: DataTopic): void {
    this.unsubscribing.get(topic)?.timer.clear();
    this.unsubscribing.delete(topic);
  }

  private send(request: ClientRequest): void {
    const socket = this.socket;
    if (!socket || !this.socketOpen) return;
    try {
      socket.send(encodeRequest(request));
    } catch {
      // The socket is closing; its close event will follow and the client will reconnect.
    }
  }

  private report(error: ClientError): void {
    this.bus.publish("error", error);
  }

  private clampedRandom(): number {
    const r = this.random();
    return Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
  }

  private update(status: ConnectionStatus): void {
    const previous = this.current;
    // Leave out fields that are undefined so status objects compare and print cleanly.
    const next = Object.freeze(
      Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined)),
    ) as unknown as ConnectionStatus;
    this.current = next;
    // Also when only the next attempt's time or why the last one failed changed: a status
    // shown to the user ("next attempt in 20 s") must not go stale over repeated failures.
    const changed = (["state", "polling", "reason", "nextAttemptAt", "closeCode", "error"] as const).some(
      (field) => previous[field] !== next[field],
    );
    if (changed) {
      this.bus.publish("connection", next);
    }
  }
}

/** The message type a channel delivers. */
export type ChannelMessage<C extends Channel> = C extends { type: "alerts" }
  ? PulseTopics["alerts"]
  : C extends { type: "fleet" }
    ? PulseTopics["fleet"]
    : C extends { type: "device" }
      ? PulseTopics[`telemetry:${string}`]
      : C extends { type: "events" }
        ? PulseTopics[`events:${string}`]
        : never;


