/**
 * Ordering by `seq`.
 *
 * - Snapshots (alerts, fleet, telemetry): keep the highest `seq` seen per topic and drop any
 *   message whose `seq` is lower than or equal to it. After a reconnect the gateway sends the
 *   current snapshot again, with the same `seq`: it is dropped as a duplicate.
 * - Events: the `seq` of an event topic increases by exactly 1 per event, so one number per
 *   topic (the position: the last event delivered, or the baseline the gateway named) tells
 *   everything. The next event is position + 1; a lower one is a duplicate (a replay overlapping
 *   what was delivered); a higher one follows a gap. The position is also where a resubscription
 *   resumes (`since`), so that nothing is missed across reconnects.
 *
 * Topics never affect each other.
 *
 * @packageDocumentation
 */

/**
 * What to do with an event, by its `seq`:
 *
 * - `next`: deliver it; it follows the position, or is the first event (or the first after a
 *   reset) and so becomes the position.
 * - `duplicate`: drop it; an event with this `seq` was already delivered.
 * - `gap`: deliver it, after telling that the events between the position and it were missed.
 */
export type EventVerdict = "next" | "duplicate" | "gap";

/** What a `subscribed` reply's `seq` means for the topic's position. */
export type BaselineVerdict =
  /** The position is now that `seq`: events after it follow. */
  | "baseline"
  /** Nothing changes. */
  | "ignored"
  /**
   * The subscription resumed with `since`, yet the gateway named a newer `seq` instead of
   * replaying: the events between were missed. The position is now that `seq`.
   */
  | "gap";

interface EventCursor {
  /** The `seq` of the last event delivered, or the baseline from `subscribed`. */
  position: number | undefined;
  /** After a reset: the next event becomes the position, whatever its `seq`. */
  rebase: boolean;
  /** After a reset naming it: the `seq` of the first event that follows. */
  oldest: number | undefined;
}

/** Tracks the `seq`s seen per topic and decides which messages are new. */
export class SeqTracker {
  private readonly highestSeq = new Map<string, number>();
  /** Topics whose latest delivered snapshot came from a REST poll, not from the gateway. */
  private readonly polled = new Set<string>();
  private readonly cursors = new Map<string, EventCursor>();

  /**
   * Records a snapshot's `seq`.
   *
   * @returns true when `seq` is higher than every `seq` seen on `topic` (the message is new);
   *   false for an older or duplicate snapshot, which should be dropped.
   */
  acceptSnapshot(topic: string, seq: number): boolean {
    const highest = this.highestSeq.get(topic);
    // After a poll, the gateway's snapshot replaces the polled one even with the `seq` already
    // seen: what was shown last did not come from it. An older one, dropped, leaves the polled
    // one in place for the next.
    const afterPoll = this.polled.has(topic);
    if (highest !== undefined && (afterPoll ? seq < highest : seq <= highest)) return false;
    this.polled.delete(topic);
    this.highestSeq.set(topic, seq);
    return true;
  }

  /** Records that `topic` now shows a polled snapshot (whose `seq` says nothing). */
  polledSnapshot(topic: string): void {
    this.polled.add(topic);
  }

  /** The highest snapshot `seq` seen on `topic`, or `undefined` when none was. */
  highest(topic: string): number | undefined {
    return this.highestSeq.get(topic);
  }

  /**
   * Records an event's `seq` and says whether to deliver it. An event that is delivered
   * (`next` or `gap`) becomes the topic's position.
   */
  acceptEvent(topic: string, seq: number): EventVerdict {
    const cursor = this.cursor(topic);
    const position = cursor.position;
    if (cursor.rebase || position === undefined) {
      this.moveTo(cursor, seq);
      return "next";
    }
    if (seq <= position) return "duplicate";
    this.moveTo(cursor, seq);
    return seq === position + 1 ? "next" : "gap";
  }

  /**
   * Records the `seq` of a `subscribed` reply for an events topic.
   *
   * @param since - the `since` the subscribe carried, `undefined` when it had none.
   */
  acceptBaseline(topic: string, seq: number, since: number | undefined): BaselineVerdict {
    const cursor = this.cursor(topic);
    if (since !== undefined) {
      // The reply to a resume carries no `seq`; one that does and is ahead skipped events.
      if (seq <= since) return "ignored";
      this.moveTo(cursor, seq);
      return "gap";
    }
    // A fresh subscription: events after `seq` follow. A position already there can only come
    // from events of an earlier subscription still in flight, which the gateway sent before
    // this reply: at or ahead of `seq`, keep it; behind it, the events in between went out
    // while neither subscription held the topic, and they are missed.
    if (cursor.position !== undefined && !cursor.rebase) {
      if (seq <= cursor.position) return "ignored";
      this.moveTo(cursor, seq);
      return "gap";
    }
    this.moveTo(cursor, seq);
    return "baseline";
  }

  /**
   * Records that events of `topic` were missed: the next event becomes the position, whatever
   * its `seq`. `oldest` (the `seq` of the first event that follows, when known) is where a
   * resubscription resumes until then.
   */
  resetEvents(topic: string, oldest: number | null): void {
    const cursor = this.cursor(topic);
    cursor.rebase = true;
    cursor.oldest = oldest ?? undefined;
  }

  /** The `seq` of the last event delivered on `topic`, or its baseline; `undefined` when none. */
  position(topic: string): number | undefined {
    return this.cursors.get(topic)?.position;
  }

  /**
   * The `since` for subscribing `topic` again: the position, or just before the first event a
   * reset announced; `undefined` when there is nothing to resume from.
   */
  resumeAfter(topic: string): number | undefined {
    const cursor = this.cursors.get(topic);
    if (!cursor) return undefined;
    if (cursor.rebase && cursor.oldest !== undefined) return Math.max(0, cursor.oldest - 1);
    return cursor.position;
  }

  /** Forgets `topic`, e.g. when its channel is released: its next message is accepted. */
  forget(topic: string): void {
    this.highestSeq.delete(topic);
    this.polled.delete(topic);
    this.cursors.delete(topic);
  }

  /** Forgets every topic. */
  clear(): void {
    this.highestSeq.clear();
    this.polled.clear();
    this.cursors.clear();
  }

  private cursor(topic: string): EventCursor {
    let cursor = this.cursors.get(topic);
    if (!cursor) {
      cursor = { position: undefined, rebase: false, oldest: undefined };
      this.cursors.set(topic, cursor);
    }
    return cursor;
  }

  private moveTo(cursor: EventCursor, seq: number): void {
    cursor.position = seq;
    cursor.rebase = false;
    cursor.oldest = undefined;
  }
}
