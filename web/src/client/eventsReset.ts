/**
 * {@link EventsReset}: what the subscribers of an event topic are told when events of it were
 * missed, whoever noticed: the gateway (`events_reset`) or the client (a `seq` that skips).
 *
 * @packageDocumentation
 */

import type { EventsResetReason } from "./types.js";

/**
 * Events of `topic` were missed: refetch what they drive (over REST), then go on with the events
 * that follow, which the client delivers as usual. Published on `events_reset:<topic>` before
 * those events.
 */
export interface EventsReset {
  /** The event topic, without the `events:` prefix. */
  topic: string;
  /** The `seq` of the first event that follows; `null` when it is not known. */
  oldest: number | null;
  /** Why; `gap` when the client saw an event whose `seq` skipped some. */
  reason: EventsResetReason;
  /** The `seq` of the last event delivered before the reset (or the baseline); `null` when none. */
  last: number | null;
}
