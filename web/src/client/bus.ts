/**
 * A topic bus: many handlers per topic, each isolated from the others.
 *
 * @packageDocumentation
 */

import type { ClientError } from "./errors.js";
import type { EventsReset } from "./eventsReset.js";
import type { PollSucceeded } from "./fallback.js";
import type { EventsResetTopic, EventsTopic, TelemetryTopic } from "./protocol.js";
import type { ConnectionStatus } from "./status.js";
import type { SubscriptionStatus } from "./subscription.js";
import type { AlertsMessage, EventMessage, FleetMessage, TelemetryMessage } from "./types.js";

/** The topics of the Pulse client and what each carries. */
export interface PulseTopics {
  /** The tenant's open alerts. */
  alerts: AlertsMessage;
  /** Device counts and statuses. */
  fleet: FleetMessage;
  /** The newest reading of one device: `telemetry:<device_id>`. */
  [topic: TelemetryTopic]: TelemetryMessage;
  /** The events of one topic, each once and in `seq` order: `events:<topic>`. */
  [topic: EventsTopic]: EventMessage;
  /** Events of one topic were missed and what they drive must be refetched: `events_reset:<topic>`. */
  [topic: EventsResetTopic]: EventsReset;
  /** Every change of the connection state. */
  connection: ConnectionStatus;
  /** Every change of a held subscription's state on the gateway. */
  subscription: SubscriptionStatus;
  /** Every problem the client reports (bad frames, gateway errors, failed polls, ...). */
  error: ClientError;
  /**
   * Every fallback poll that got through (a failed one is `poll_failed` on `error`): without
   * it, a fallback that works and one failing at every try would both be just "polling".
   */
  polled: PollSucceeded;
}

/** A topic of the Pulse bus. */
export type PulseTopic = keyof PulseTopics & string;

/** A function receiving the payloads of one topic. */
export type Handler<T> = (payload: T) => void;

/** Removes what it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;

/**
 * Called when a handler throws. It gets the error, the topic and the payload being delivered.
 * The other handlers of the topic still run.
 */
export type HandlerErrorHook = (error: unknown, topic: string, payload: unknown) => void;

/** Options of a {@link TopicBus}. */
export interface TopicBusOptions {
  /** Called for every error a handler throws; by default the error is logged to the console. */
  onHandlerError?: HandlerErrorHook;
}

interface Entry {
  readonly handler: Handler<never>;
  active: boolean;
}

/** Logs a handler error to the console. */
export const logHandlerError: HandlerErrorHook = (error, topic) => {
  console.error(`pulse: a handler of topic "${topic}" failed`, error);
};

/**
 * A synchronous publish/subscribe bus keyed by topic.
 *
 * A handler that throws never stops the others: its error goes to {@link TopicBus.onHandlerError}
 * and delivery goes on. Handlers added while a payload is delivered do not get that payload;
 * handlers removed while it is delivered do not get it either.
 *
 * @typeParam M - maps each topic to the type of its payloads.
 */
export class TopicBus<M extends object> {
  /** Called for every error a handler throws. Replace it to send errors to your own reporting. */
  onHandlerError: HandlerErrorHook;

  private readonly topics = new Map<string, Set<Entry>>();

  /** Creates an empty bus. */
  constructor(options: TopicBusOptions = {}) {
    this.onHandlerError = options.onHandlerError ?? logHandlerError;
  }

  /**
   * Calls `handler` with every payload later published on `topic`.
   *
   * @returns a function that removes the handler.
   */
  on<K extends keyof M & string>(topic: K, handler: Handler<M[K]>): Unsubscribe {
    const entry: Entry = { handler: handler as Handler<never>, active: true };
    let entries = this.topics.get(topic);
    if (!entries) {
      entries = new Set();
      this.topics.set(topic, entries);
    }
    entries.add(entry);
    return () => {
      if (!entry.active) return;
      entry.active = false;
      const current = this.topics.get(topic);
      if (!current) return;
      current.delete(entry);
      if (current.size === 0) this.topics.delete(topic);
    };
  }

  /**
   * Delivers `payload` to every handler of `topic`, in the order they were added.
   *
   * @returns how many handlers were called (including the ones that threw).
   */
  publish<K extends keyof M & string>(topic: K, payload: M[K]): number {
    const entries = this.topics.get(topic);
    if (!entries) return 0;
    let called = 0;
    for (const entry of [...entries]) {
      if (!entry.active) continue;
      called += 1;
      this.deliver(topic, entry.handler as Handler<M[K]>, payload);
    }
    return called;
  }

  /**
   * Calls one handler with `payload` under the same isolation as {@link TopicBus.publish}: an
   * error it throws goes to {@link TopicBus.onHandlerError}.
   */
  deliver<K extends keyof M & string>(topic: K, handler: Handler<M[K]>, payload: M[K]): void {
    try {
      handler(payload);
    } catch (error) {
      this.reportHandlerError(error, topic, payload);
    }
  }

  /** How many handlers `topic` has. */
  listenerCount(topic: keyof M & string): number {
    return this.topics.get(topic)?.size ?? 0;
  }

  /** Removes every handler of every topic. */
  clear(): void {
    for (const entries of this.topics.values()) {
      for (const entry of entries) entry.active = false;
    }
    this.topics.clear();
  }

  private reportHandlerError(error: unknown, topic: string, payload: unknown): void {
    try {
      this.onHandlerError(error, topic, payload);
    } catch (hookError) {
      // The hook itself failed: fall back to the console rather than lose both errors.
      logHandlerError(error, topic, payload);
      console.error("pulse: the handler error hook failed", hookError);
    }
  }
}

/** The bus of a {@link PulseClient}. */
export type PulseBus = TopicBus<PulseTopics>;

/** Creates an empty bus with the Pulse topics. */
export function createPulseBus(options: TopicBusOptions = {}): PulseBus {
  return new TopicBus<PulseTopics>(options);
}
