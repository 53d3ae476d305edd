//! A client's outbound queue: bounded, and never slowed by the client.
//!
//! Snapshot subjects (alerts, fleet, telemetry) are conflated: only the newest frame per
//! subject waits, so a slow reader skips intermediate states and memory stays bounded by its
//! subscriptions. Event subjects keep every frame up to `PULSE_CLIENT_QUEUE_EVENTS`; beyond
//! that the queue marks itself overflowed and the connection is closed with 4008, so the
//! client reconnects and recovers instead of silently missing events. Events the gateway sends
//! in a burst of its own (a resume's replay, events read back after a gap or an outage) wait
//! beyond that cap, within the connection's replay room instead: the burst is no sign that
//! the client reads slowly.
//!
//! Producers (NATS dispatch tasks) only lock, push and wake; the connection's writer takes
//! everything pending at once and writes it in one batch.
//!
//! The queue owns the order of a subject's frames: [`Newest`] is the one rule that says whether
//! a frame is newer than what is held. The queue conflates pending snapshots by it, the fan-out
//! keeps a topic's current value by it, and the connection writes nothing a client already has
//! by it.

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::frame::Frame;
use crate::ids::TopicId;

/// The newest `seq` held of one subject, and the rule of order against it: a frame is newer
/// when its `seq` is above it, or when it has none (`seq` 0: a publisher that sets none, or an
/// `events_reset`), which is never dropped as old. A frame that is not newer is dropped, so a
/// client never sees an older state after a newer one, nor an event twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Newest(u64);

impl Newest {
    /// Holding everything up to `seq`.
    pub const fn of(seq: u64) -> Self {
        Self(seq)
    }

    /// Whether a frame with `seq` is newer than what is held.
    pub const fn admits(self, seq: u64) -> bool {
        seq == 0 || seq > self.0
    }

    /// Takes a frame with `seq` if it is newer (then it is what is held); tells whether it was.
    pub fn advance(&mut self, seq: u64) -> bool {
        if !self.admits(seq) {
            return false;
        }
        if seq != 0 {
            self.0 = seq;
        }
        true
    }
}

/// Whether `frame` may replace `held`, a frame of the same snapshot subject.
pub fn supersedes(frame: &Frame, held: &Frame) -> bool {
    Newest::of(held.seq).admits(frame.seq)
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// It replaced an older pending frame of the same subject.
    Conflated,
    /// An older (or equal) `seq` than the one pending: dropped.
    Stale,
    /// The event queue is full; the connection will be closed.
    Overflow,
    /// The connection is gone.
    Closed,
}

/// Replayed events (and their bytes) a connection may still have waiting, or has waiting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub events: usize,
    pub bytes: usize,
}

impl Room {
    /// What is left of this room once `used` of it is taken.
    fn less(self, used: Room) -> Room {
        Room {
            events: self.events.saturating_sub(used.events),
            bytes: self.bytes.saturating_sub(used.bytes),
        }
    }
}

#[derive(Default)]
struct State {
    snapshots: Vec<Frame>,
    events: std::collections::VecDeque<Frame>,
    /// Replayed events waiting beyond the cap: a resuming client's backlog does not count
    /// against the live events that follow it.
    replayed: usize,
    /// Replayed frames pushed and not written yet, queued or in the batch being written: what
    /// the connection's replay room is counted against ([`ClientQueue::replay_room`]).
    unwritten: Room,
    /// Of `unwritten`, what the writer took into its batch ([`ClientQueue::written`]).
    in_batch: Room,
    overflowed: bool,
    closed: bool,
}

pub struct ClientQueue {
    state: Mutex<State>,
    wake: Notify,
    overflow: Notify,
    event_cap: usize,
    /// Catch-ups from the events stream this client may run at once: each reads at most the
    /// replay room left when it starts, so a client resuming many channels at once reads a few
    /// replays' worth, not one per channel.
    catch_ups: tokio::sync::Semaphore,
    /// Live events held for this client's catch-ups, across its channels ([`ClientQueue::hold`]).
    held: std::sync::atomic::AtomicUsize,
    /// Bytes of replayed frames waiting, of every client (`pulse_gateway_replay_bytes_waiting`):
    /// moved under the lock that counts them, so the sum never shows less than nothing.
    waiting: Gauge,
}

/// Catch-ups one client runs at once ([`ClientQueue::catch_up_turn`]).
const CATCH_UPS_AT_ONCE: usize = 4;

impl ClientQueue {
    /// A queue of up to `event_cap` live events, its replayed bytes counted in `waiting`.
    pub fn new(event_cap: usize, waiting: Gauge) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            overflow: Notify::new(),
            event_cap,
            catch_ups: tokio::sync::Semaphore::new(CATCH_UPS_AT_ONCE),
            held: std::sync::atomic::AtomicUsize::new(0),
            waiting,
        }
    }

    /// Waits for this client's turn to read the events stream for a catch-up; the turn ends
    /// when the permit is dropped. `None` only if the semaphore was closed (it never is).
    pub async fn catch_up_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.catch_ups.acquire().await.ok()
    }

    /// Keeps only the newest frame per snapshot subject.
    pub fn push_snapshot(&self, frame: Frame) -> Pushed {
        let pushed = {
            let mut s = self.state.lock();
            if s.closed {
                return Pushed::Closed;
            }
            match s.snapshots.iter_mut().find(|f| f.topic == frame.topic) {
                Some(pending) if !supersedes(&frame, pending) => {
                    return Pushed::Stale;
                }
                Some(pending) => {
                    *pending = frame;
                    Pushed::Conflated
                }
                None => {
                    s.snapshots.push(frame);
                    Pushed::Queued
                }
            }
        };
        self.wake.notify_one();
        pushed
    }

    /// Keeps every event frame, up to the cap.
    pub fn push_event(&self, frame: Frame) -> Pushed {
        let pushed = {
            let mut s = self.state.lock();
            if s.closed {
                return Pushed::Closed;
            }
            if s.events.len() >= self.event_cap + s.replayed {
                if !s.overflowed {
                    s.overflowed = true;
                    self.overflow.notify_one();
                }
                Pushed::Overflow
            } else {
                s.events.push_back(frame);
                Pushed::Queued
            }
        };
        self.wake.notify_one();
        pushed
    }

    /// How many more replayed events, and bytes of them, may wait, of `max` for the whole
    /// connection: a client resuming many channels at once holds one replay limit's worth, not
    /// one per channel. Replayed frames count until they are written, not only while queued:
    /// a client that reads slowly cannot have one replay taken into the writer's batch and
    /// another queued behind it.
    pub fn replay_room(&self, max: Room) -> Room {
        max.less(self.state.lock().unwritten)
    }

    /// Queues, in order and whatever the event cap, the replayed events (and resets) `make`
    /// gives for the room left of `max` (see [`ClientQueue::replay_room`]), the room taken and
    /// the frames queued under one lock: the catch-ups of one connection's channels, running
    /// at once, cannot each fill the same room. `make` runs even when the client is gone
    /// (what it decides may concern others); its frames are then dropped. Returns the bytes
    /// queued.
    pub fn push_replay(&self, max: Room, make: impl FnOnce(Room) -> Vec<Frame>) -> usize {
        let bytes = {
            let mut s = self.state.lock();
            let frames = make(max.less(s.unwritten));
            if s.closed {
                return 0;
            }
            let bytes: usize = frames.iter().map(|f| f.text.len()).sum();
            self.count_replayed(&mut s, frames.len(), bytes);
            s.events.extend(frames);
            bytes
        };
        self.wake.notify_one();
        bytes
    }

    /// Queues an event the gateway held back and now sends with others at once (read back
    /// from the stream after a gap or an outage, or held live beyond a gap): like a replay, it
    /// waits beyond the event cap, within the replay room left of `max`. Where that room is
    /// taken (a replay not written yet, an event larger than the room), it waits as a live
    /// event would, within the cap; past both the client is too far behind, and the queue
    /// overflows.
    pub fn push_held(&self, frame: Frame, max: Room) -> Pushed {
        {
            let mut s = self.state.lock();
            if s.closed {
                return Pushed::Closed;
            }
            let (room, bytes) = (max.less(s.unwritten), frame.text.len());
            if room.events == 0 || room.bytes < bytes {
                drop(s);
                return self.push_event(frame);
            }
            self.count_replayed(&mut s, 1, bytes);
            s.events.push_back(frame);
        }
        self.wake.notify_one();
        Pushed::Queued
    }

    /// Counts `added` frames of `bytes` queued beyond the event cap, against the replay room
    /// until they are written.
    fn count_replayed(&self, s: &mut State, added: usize, bytes: usize) {
        s.replayed += added;
        s.unwritten.events += added;
        s.unwritten.bytes += bytes;
        self.waiting.inc_by(bytes as i64);
    }

    /// The writer wrote the batch it took last: its replayed frames no longer count against
    /// the replay room. Returns their bytes.
    pub fn written(&self) -> usize {
        let mut s = self.state.lock();
        let batch = std::mem::take(&mut s.in_batch);
        s.unwritten.events -= batch.events;
        s.unwritten.bytes -= batch.bytes;
        self.waiting.dec_by(batch.bytes as i64);
        batch.bytes
    }

    /// Most events that may wait.
    pub fn event_cap(&self) -> usize {
        self.event_cap
    }

    /// Counts one more live event held for a catch-up of this client, unless `max` (across its
    /// channels) are held already: then false, and the client is too far behind.
    pub fn hold(&self, max: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// `n` held events were replayed or dropped with their catch-up.
    pub fn release_held(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
    }

    /// Marks the event queue overflowed (the client is closed with 4008), for events held
    /// back elsewhere that would not fit either.
    pub fn overflow_now(&self) {
        let mut s = self.state.lock();
        if !s.overflowed && !s.closed {
            s.overflowed = true;
            self.overflow.notify_one();
            self.wake.notify_one();
        }
    }

    /// Resolves when something was pushed since the last [`ClientQueue::take`].
    pub async fn ready(&self) {
        self.wake.notified().await;
    }

    /// Resolves once the event queue has overflowed, even while the writer is busy.
    pub async fn overflowed(&self) {
        self.overflow.notified().await;
    }

    /// Moves everything pending into `out` (snapshots first, then events in order) and tells
    /// whether the event queue overflowed.
    pub fn take(&self, out: &mut Vec<Frame>) -> bool {
        let mut s = self.state.lock();
        out.append(&mut s.snapshots);
        out.extend(s.events.drain(..));
        s.replayed = 0;
        s.in_batch = s.unwritten;
        // Release the capacity a burst left behind, so an idle client holds no large buffers.
        if s.snapshots.capacity() > 16 {
            s.snapshots.shrink_to(4);
        }
        if s.events.capacity() > 64 {
            s.events.shrink_to(8);
        }
        s.overflowed
    }

    /// Drops pending frames of a subject the client just left.
    pub fn forget(&self, topic: TopicId) {
        let mut s = self.state.lock();
        s.snapshots.retain(|f| f.topic != topic);
        s.events.retain(|f| f.topic != topic);
    }

    /// Refuses every later push and frees what is pending; returns the bytes of replayed
    /// frames that will not be written.
    pub fn close(&self) -> usize {
        let mut s = self.state.lock();
        s.closed = true;
        s.in_batch = Room::default();
        let unwritten = std::mem::take(&mut s.unwritten).bytes;
        self.waiting.dec_by(unwritten as i64);
        s.snapshots = Vec::new();
        s.events = Default::default();
        unwritten
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn frame(topic: TopicId, seq: u64) -> Frame {
        Frame {
            topic,
            seq,
            snapshot: true,
            text: format!("{topic}:{seq}").into(),
            received: Instant::now(),
        }
    }

    fn room(events: usize, bytes: usize) -> Room {
        Room { events, bytes }
    }

    /// Queues `frames` as a replay, whatever room is left.
    fn replay(q: &ClientQueue, frames: Vec<Frame>) -> usize {
        q.push_replay(room(usize::MAX, usize::MAX), |_| frames)
    }

    fn texts(q: &ClientQueue) -> Vec<String> {
        let mut out = Vec::new();
        q.take(&mut out);
        out.iter().map(|f| f.text.to_string()).collect()
    }

    #[test]
    fn snapshots_conflate_to_the_newest_per_subject() {
        let q = ClientQueue::new(10, Gauge::default());
        assert_eq!(q.push_snapshot(frame(1, 1)), Pushed::Queued);
        assert_eq!(q.push_snapshot(frame(2, 1)), Pushed::Queued);
        assert_eq!(q.push_snapshot(frame(1, 3)), Pushed::Conflated);
        assert_eq!(q.push_snapshot(frame(1, 2)), Pushed::Stale);
        assert_eq!(texts(&q), ["1:3", "2:1"]);
        assert!(texts(&q).is_empty());
    }

    #[test]
    fn events_are_kept_in_order_until_the_cap() {
        let q = ClientQueue::new(3, Gauge::default());
        for seq in 1..=3 {
            assert_eq!(q.push_event(frame(9, seq)), Pushed::Queued);
        }
        assert_eq!(q.push_event(frame(9, 4)), Pushed::Overflow);
        let mut out = Vec::new();
        assert!(q.take(&mut out), "overflow must be reported");
        let seqs: Vec<u64> = out.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn forget_and_close() {
        let q = ClientQueue::new(3, Gauge::default());
        q.push_snapshot(frame(1, 1));
        q.push_event(frame(2, 1));
        q.forget(1);
        assert_eq!(texts(&q), ["2:1"]);
        q.close();
        assert_eq!(q.push_snapshot(frame(1, 2)), Pushed::Closed);
        assert_eq!(q.push_event(frame(2, 2)), Pushed::Closed);
        assert!(texts(&q).is_empty());
    }

    #[test]
    fn a_replay_does_not_count_against_the_live_events_after_it() {
        let q = ClientQueue::new(2, Gauge::default());
        replay(&q, (1..=5).map(|seq| frame(9, seq)).collect());
        assert_eq!(q.push_event(frame(9, 6)), Pushed::Queued);
        assert_eq!(q.push_event(frame(9, 7)), Pushed::Queued);
        assert_eq!(q.push_event(frame(9, 8)), Pushed::Overflow);
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(
            out.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7]
        );
    }

    #[test]
    fn held_events_go_past_the_cap_within_the_replay_room_and_are_counted_until_written() {
        let waiting = Gauge::default();
        let q = ClientQueue::new(2, waiting.clone());
        let max = room(4, 100);
        for seq in 1..=4 {
            assert_eq!(q.push_held(frame(9, seq), max), Pushed::Queued, "{seq}");
        }
        assert_eq!(waiting.get(), 12, "four frames of three bytes");
        // Live events after them still have the whole cap.
        assert_eq!(q.push_event(frame(9, 5)), Pushed::Queued);
        assert_eq!(q.push_event(frame(9, 6)), Pushed::Queued);
        // The room is full and so is the cap: a client that took none of them is too far
        // behind.
        assert_eq!(q.push_held(frame(9, 7), max), Pushed::Overflow);
        let mut out = Vec::new();
        assert!(q.take(&mut out));
        assert_eq!(
            out.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(q.written(), 12);
        assert_eq!(waiting.get(), 0);

        let q = ClientQueue::new(2, waiting.clone());
        q.push_held(frame(9, 1), max);
        q.close();
        assert_eq!(
            waiting.get(),
            0,
            "what a closed client will never be written"
        );
    }

    #[test]
    fn held_events_wait_within_the_cap_where_the_room_is_taken() {
        let q = ClientQueue::new(2, Gauge::default());
        let max = room(4, 100);
        // A resume's replay, not written yet, holds the whole room.
        replay(&q, (1..=4).map(|seq| frame(8, seq)).collect());
        assert_eq!(q.push_held(frame(9, 1), max), Pushed::Queued);
        // So does an event larger than the room, whatever it holds.
        let big = Frame {
            text: "x".repeat(200).into(),
            ..frame(9, 2)
        };
        assert_eq!(q.push_held(big, max), Pushed::Queued);
        assert_eq!(q.push_held(frame(9, 3), max), Pushed::Overflow);
    }

    #[test]
    fn replayed_frames_count_against_the_room_until_they_are_written() {
        let q = ClientQueue::new(2, Gauge::default());
        let max = room(10, 100);
        // Frames `9:1` … `9:3`: three bytes each.
        assert_eq!(replay(&q, (1..=3).map(|seq| frame(9, seq)).collect()), 9);
        let left = room(7, 91);
        assert_eq!(q.replay_room(max), left);
        // Taken into the writer's batch, they still wait: another replay cannot pile up
        // behind a batch the client has not read.
        let mut batch = Vec::new();
        q.take(&mut batch);
        assert_eq!(q.replay_room(max), left);
        replay(&q, vec![frame(9, 4)]);
        assert_eq!(q.written(), 9, "the batch's bytes");
        let after_write = room(9, 97);
        assert_eq!(q.replay_room(max), after_write, "only the one queued since");
        assert_eq!(q.close(), 3, "what will never be written");
        assert_eq!(q.replay_room(max), max);
    }

    #[test]
    fn a_replay_is_made_for_the_room_the_ones_before_it_left() {
        let q = ClientQueue::new(2, Gauge::default());
        let max = room(10, 7);
        // Each replay keeps what fits the room it is given (frames of three bytes).
        let fit = |room: Room| -> Vec<Frame> {
            (1..=3)
                .map(|seq| frame(9, seq))
                .take(room.bytes / 3)
                .collect()
        };
        assert_eq!(q.push_replay(max, fit), 6);
        assert_eq!(q.push_replay(max, fit), 0, "one byte left: none fits");
        let mut batch = Vec::new();
        q.take(&mut batch);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn newest_admits_only_newer_frames_and_always_those_without_seq() {
        let mut newest = Newest::of(5);
        assert!(!newest.advance(4));
        assert!(!newest.advance(5));
        assert!(newest.advance(0), "a frame without seq is never old");
        assert_eq!(newest, Newest::of(5), "and it moves nothing");
        assert!(newest.advance(6));
        assert!(!newest.admits(6));
        assert!(supersedes(&frame(1, 0), &frame(1, 9)));
        assert!(supersedes(&frame(1, 3), &frame(1, 0)));
        assert!(!supersedes(&frame(1, 3), &frame(1, 3)));
    }

    #[tokio::test]
    async fn a_push_wakes_the_writer() {
        let q = std::sync::Arc::new(ClientQueue::new(3, Gauge::default()));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.ready().await });
        tokio::task::yield_now().await;
        q.push_snapshot(frame(1, 1));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn live_events_held_for_catch_ups_are_counted_across_channels_up_to_the_limit() {
        let q = ClientQueue::new(4, Gauge::default());
        assert!((0..10).all(|_| q.hold(10)));
        assert!(
            !q.hold(10),
            "the eleventh is one too many, whichever channel holds it"
        );
        q.release_held(3);
        assert!((0..3).all(|_| q.hold(10)));
        assert!(!q.hold(10));
        q.release_held(100);
        assert!(q.hold(1));
    }
}
