/**
 * Ordering by `seq`, which increases per subject.
 *
 * - Snapshots (alerts, fleet, telemetry): keep the highest `seq` seen per topic and drop any
 *   message whose `seq` is lower than or equal to it. After a reconnect the gateway sends the
 *   current snapshot again, with the same `seq`: it is dropped as a duplicate.
 * - Events: every event matters, and two publishers may deliver theirs slightly out of `seq`
 *   order, so `seq` only drops duplicates: an event whose `seq` was already seen on its topic.
 *
 * Topics never affect each other.
 *
 * @packageDocumentation
 */

/** Options of a {@link SeqTracker}. */
export interface SeqTrackerOptions {
  /** How many recent event `seq`s are remembered per topic for dropping duplicates. Default 1024. */
  eventWindow?: number;
}

/** Default number of recent event `seq`s remembered per topic. */
export const DEFAULT_EVENT_WINDOW = 1024;

/** Tracks the `seq`s seen per topic and decides which messages are new. */
export class SeqTracker {
  private readonly highestSeq = new Map<string, number>();
  private readonly recentEvents = new Map<string, Set<number>>();
  private readonly eventWindow: number;

  /** Creates a tracker that has seen nothing. */
  constructor(options: SeqTrackerOptions = {}) {
    this.eventWindow = Math.max(1, Math.floor(options.eventWindow ?? DEFAULT_EVENT_WINDOW));
  }

  /**
   * Records a snapshot's `seq`.
   *
   * @returns true when `seq` is higher than every `seq` seen on `topic` (the message is new);
   *   false for an older or duplicate snapshot, which should be dropped.
   */
  acceptSnapshot(topic: string, seq: number): boolean {
    const highest = this.highestSeq.get(topic);
    if (highest !== undefined && seq <= highest) return false;
    this.highestSeq.set(topic, seq);
    return true;
  }

  /**
   * Records an event's `seq`.
   *
   * @returns false when this `seq` was already seen on `topic` (a duplicate to drop), else true,
   *   even when it is lower than the highest seen.
   */
  acceptEvent(topic: string, seq: number): boolean {
    let recent = this.recentEvents.get(topic);
    if (!recent) {
      recent = new Set();
      this.recentEvents.set(topic, recent);
    }
    if (recent.has(seq)) return false;
    recent.add(seq);
    if (recent.size > this.eventWindow) {
      // Sets iterate in insertion order: forget the oldest.
      const oldest = recent.values().next().value;
      if (oldest !== undefined) recent.delete(oldest);
    }
    const highest = this.highestSeq.get(topic);
    if (highest === undefined || seq > highest) this.highestSeq.set(topic, seq);
    return true;
  }

  /** The highest `seq` seen on `topic`, or `undefined` when none was. */
  highest(topic: string): number | undefined {
    return this.highestSeq.get(topic);
  }

  /** Forgets `topic`, e.g. when its channel is released: its next message is accepted. */
  forget(topic: string): void {
    this.highestSeq.delete(topic);
    this.recentEvents.delete(topic);
  }

  /** Forgets every topic. */
  clear(): void {
    this.highestSeq.clear();
    this.recentEvents.clear();
  }
}
