//! An event topic's order on this instance, and how a client that asks for `since` is brought
//! up to date without a gap or a duplicate.
//!
//! [`EventLog`] keeps the topic's `head` (the highest `seq` delivered to local subscribers,
//! every lower one delivered before it, in order) and the most recent frames. A live event is
//! delivered only as `head + 1`: a lower one is a duplicate, a higher one reveals a gap that
//! the caller fills from the stream first. A client resuming from `since` is served from the
//! recent frames when they reach back far enough; otherwise it is "catching up": live frames
//! wait in its buffer while the stream is read, and [`splice`] joins both.
//!
//! Pure data: no I/O and no locks here; the fan-out holds the lock around it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use axum::extract::ws::Utf8Bytes;
use prometheus_client::metrics::gauge::Gauge;
use pulse_proto::{ResetReason, ServerReply, Topic};

use crate::frame::Frame;
use crate::history::Stored;
use crate::ids::{ConnId, TopicId};
use crate::queue::Room;

/// Bytes of recent frames one topic keeps at most, whatever `PULSE_EVENTS_CACHE` allows: a
/// topic of large events must not hold hundreds of them in memory per gateway.
pub const RECENT_BYTES_MAX: usize = 1024 * 1024;

/// Bytes of recent frames all topics of this instance keep together
/// (`PULSE_EVENTS_CACHE_BYTES`): many topics of large events, each within
/// [`RECENT_BYTES_MAX`], must not add up to more memory than the instance has. A topic makes
/// room from its own oldest frames; one that finds none to let go keeps nothing, and clients
/// resuming on it are served from the stream instead.
#[derive(Debug)]
pub struct CacheBudget {
    max: usize,
    used: AtomicUsize,
    gauge: Gauge,
}

impl CacheBudget {
    pub fn new(max: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Takes `bytes` if they fit.
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(AtomicOrdering::AcqRel, AtomicOrdering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok();
        if taken {
            self.gauge.inc_by(bytes as i64);
        }
        taken
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, AtomicOrdering::AcqRel);
        self.gauge.dec_by(bytes as i64);
    }

    /// Bytes kept now, across topics.
    pub fn used(&self) -> usize {
        self.used.load(AtomicOrdering::Acquire)
    }
}

/// Where a live event stands against the topic's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The next one (or the first one seen): deliver it.
    Next,
    /// Already delivered.
    Duplicate,
    /// Events between `head` and this one are missing.
    Gap { head: u64 },
}

/// One thing to push to a client: an event, or word that events were missed.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Frame),
    Reset {
        oldest: Option<u64>,
        reason: ResetReason,
    },
}

/// The `seq` a subscriber without `since` is told in `subscribed`: every event after it reaches
/// that subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// Subscribed while the head was unknown and nothing was delivered: settled by the read of
    /// the newest stored event, or by the first event delivered, whichever comes first.
    Unknown,
    /// `None`: no `seq` to tell (the stream held none of the topic's events).
    Known(Option<u64>),
}

/// A topic's recent events on this instance.
pub struct EventLog {
    /// Highest `seq` delivered, with every lower one before it; `None` until known.
    pub head: Option<u64>,
    /// The head is 0 because the stream held none of the topic's events when this instance
    /// read it ([`EventLog::learn_head`]), not because an event was delivered.
    empty_at_read: bool,
    /// The newest stored `seq` learned while nothing was delivered here, too late to be the
    /// head ([`EventLog::learn_floor`]): a gap above it is read back, but nothing at or below
    /// it counts as delivered.
    floor: Option<u64>,
    recent: VecDeque<Frame>,
    /// Bytes of the frames in `recent`, taken from `budget`.
    recent_bytes: usize,
    cap: usize,
    budget: Arc<CacheBudget>,
    /// Clients catching up from the stream, with the live frames held for them meanwhile.
    pub catching_up: HashMap<ConnId, Vec<Frame>>,
    /// A read of what may have been missed (a NATS reconnect, messages NATS dropped) found no
    /// head or floor to read from: what it was for cannot be read back, and the subscribers
    /// are to be told so once the topic's place is known again.
    pub lost_unplaced: bool,
    /// Subscribers without `since` not told their `seq` yet, with the head as it stood when
    /// each joined: read later, the head may already count events queued for it, which it
    /// would then drop as duplicates.
    baselines: HashMap<ConnId, Baseline>,
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.clear_recent();
    }
}

impl EventLog {
    /// A log keeping its `cap` most recent frames, within [`RECENT_BYTES_MAX`] and what
    /// `budget` has left.
    pub fn new(cap: usize, budget: Arc<CacheBudget>) -> Self {
        Self {
            head: None,
            empty_at_read: false,
            floor: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            cap,
            budget,
            catching_up: HashMap::new(),
            lost_unplaced: false,
            baselines: HashMap::new(),
        }
    }

    /// Records where `conn`, subscribing without `since`, starts: called with the lock held
    /// that it is added to the subscribers under, so every event delivered after this point
    /// reaches it.
    pub fn await_baseline(&mut self, conn: ConnId) {
        let baseline = match self.head {
            Some(_) => Baseline::Known(self.known_head()),
            None => Baseline::Unknown,
        };
        self.baselines.insert(conn, baseline);
    }

    /// The `seq` to tell `conn` in `subscribed`: `None` when it has none (the head is still
    /// unknown, or the stream held none of the topic's events). Forgets it.
    pub fn take_baseline(&mut self, conn: ConnId) -> Option<u64> {
        match self.baselines.remove(&conn) {
            Some(Baseline::Known(seq)) => seq,
            Some(Baseline::Unknown) | None => None,
        }
    }

    /// Settles the baselines still unknown to `seq`.
    fn settle_baselines(&mut self, seq: Option<u64>) {
        for baseline in self.baselines.values_mut() {
            if *baseline == Baseline::Unknown {
                *baseline = Baseline::Known(seq);
            }
        }
    }

    /// Where an event with `seq` stands. `seq` 0 (a publisher that sets none) is always next.
    pub fn order(&self, seq: u64) -> Order {
        match self.head {
            _ if seq == 0 => Order::Next,
            None => match self.floor {
                // A stored `Pulse-Seq` is any number a publisher wrote: no `floor + 1`.
                Some(floor) if seq > floor.saturating_add(1) => Order::Gap { head: floor },
                _ => Order::Next,
            },
            Some(head) if seq <= head => Order::Duplicate,
            Some(head) if seq == head + 1 => Order::Next,
            Some(head) => Order::Gap { head },
        }
    }

    /// Records `frame` as delivered: it becomes the head and joins the recent frames.
    pub fn advance(&mut self, frame: &Frame) {
        if frame.seq == 0 {
            return;
        }
        if self.head.is_none() {
            // The first event delivered since the head was unknown: a subscriber waiting for
            // its `seq` got this one and gets every later one.
            self.settle_baselines((frame.seq > 1).then(|| frame.seq - 1));
        }
        if self
            .recent
            .back()
            .is_some_and(|last| last.seq.checked_add(1) != Some(frame.seq))
        {
            // After a gap the recent frames no longer run on without one.
            self.clear_recent();
        }
        self.head = Some(frame.seq);
        self.empty_at_read = false;
        self.floor = None;
        if self.cap == 0 {
            return;
        }
        let bytes = frame.text.len();
        while self.recent.len() >= self.cap
            || (!self.recent.is_empty() && self.recent_bytes + bytes > RECENT_BYTES_MAX)
        {
            self.drop_oldest();
        }
        while !self.budget.take(bytes) {
            if !self.drop_oldest() {
                // Nothing of its own to let go: kept nowhere, read from the stream if asked.
                return;
            }
        }
        self.recent_bytes += bytes;
        self.recent.push_back(frame.clone());
    }

    /// Lets the oldest recent frame go; false when there was none.
    fn drop_oldest(&mut self) -> bool {
        let Some(oldest) = self.recent.pop_front() else {
            return false;
        };
        self.recent_bytes -= oldest.text.len();
        self.budget.give_back(oldest.text.len());
        true
    }

    fn clear_recent(&mut self) {
        self.recent.clear();
        self.budget.give_back(self.recent_bytes);
        self.recent_bytes = 0;
    }

    /// Learns the head from the stream when nothing was delivered yet: the newest stored
    /// `seq`, or 0 when the stream holds none of the topic's events. From 0 the first event
    /// relayed later is checked like any other, so one lost on the way here (a NATS reconnect,
    /// a subscription not yet known across a cluster) is read back from the stream rather
    /// than passed over.
    pub fn learn_head(&mut self, seq: u64) {
        if self.head.is_none() {
            self.head = Some(seq);
            self.empty_at_read = seq == 0;
            self.settle_baselines(self.known_head());
        }
    }

    /// Learns the newest stored `seq` when subscribers may already be waiting without one:
    /// the read answered after the subscribe did, or a catch-up read for one client. Events up
    /// to it may still be on their way here live, and the subscribers without `seq` are owed
    /// them, so it is no head: an event at or below it is delivered, and only one further on
    /// reveals a gap, which is read back from it.
    pub fn learn_floor(&mut self, seq: u64) {
        if self.head.is_none() {
            self.floor = Some(self.floor.map_or(seq, |floor| floor.max(seq)));
            self.empty_at_read = self.floor == Some(0);
        }
    }

    /// Where a read of missed events starts: after the head, or after the floor while
    /// nothing was delivered here.
    pub fn fill_from(&self) -> Option<u64> {
        self.head.or(self.floor)
    }

    /// The head, unless it only says that the stream held nothing when this instance read it
    /// (a subscriber is not told `seq: 0`: the topic's events may have expired, and the next
    /// one is not 1).
    pub fn known_head(&self) -> Option<u64> {
        self.head.filter(|_| !self.empty_at_read)
    }

    /// Starts the order at `first`, the oldest event the stream retains, when the head came
    /// from a read that found none: the events below it expired before that read, before
    /// anyone here subscribed, so nobody here missed them. False when the head came from
    /// delivered events: then the ones below `first` were missed. False too when the stream
    /// still holds events below `first` (`oldest_stored`, the oldest it holds, is lower), as
    /// when a read passed over them for the replay limit: the stream held none at that first
    /// read, so they were stored after it, and the subscribers are owed them.
    pub fn start_at_retained(&mut self, first: u64, oldest_stored: Option<u64>) -> bool {
        if !self.empty_at_read || first == 0 || oldest_stored.is_some_and(|oldest| oldest < first) {
            return false;
        }
        self.head = Some(first - 1);
        self.empty_at_read = false;
        self.floor = None;
        self.clear_recent();
        true
    }

    /// Forgets the head after events may have been missed and could not be read back: the
    /// next live event is delivered whatever its `seq`.
    pub fn forget_head(&mut self) {
        self.head = None;
        self.empty_at_read = false;
        self.floor = None;
        self.clear_recent();
    }

    /// The frames a client that has everything up to `since` still needs, when the recent
    /// frames reach back far enough; `None` when the stream must be read.
    pub fn from_memory(&self, since: u64) -> Option<Vec<Frame>> {
        let head = self.head?;
        if since == head {
            return Some(Vec::new());
        }
        let first = self.recent.front()?.seq;
        (since < head && first <= since + 1).then(|| {
            self.recent
                .iter()
                .filter(|f| f.seq > since)
                .cloned()
                .collect()
        })
    }

    /// The recent frames, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Frame> {
        self.recent.iter()
    }
}

/// Joins what a catching-up client needs after `since`: the events read from the stream, then
/// the recent and held live frames, each once and in order, with a reset before anything that
/// does not follow on. `head` is the newest event this instance delivered: a client left
/// short of it gets a reset last, before the live events that follow. Returns `None` when a
/// gap remains and `allow_gap` is false (read again).
pub fn splice<'a>(
    since: u64,
    stored: &Stored,
    memory: impl Iterator<Item = &'a Frame>,
    head: Option<u64>,
    allow_gap: bool,
) -> Option<Vec<Item>> {
    let mut out = Vec::new();
    let mut last = since;
    if let Some(oldest) = stored.missing_before {
        out.push(Item::Reset {
            oldest: Some(oldest),
            reason: if stored.limited {
                ResetReason::Limit
            } else {
                ResetReason::Expired
            },
        });
        last = oldest - 1;
    }
    // Events missing from a stream that retains none of the topic's have expired; missing
    // from one that retains later ones, they were lost on the way. A replica's word alone may
    // be a replica behind, lacking any of them: the stream could not be read.
    let missing = match (stored.none_retained, stored.from_replica) {
        (_, true) => ResetReason::Unavailable,
        (true, false) => ResetReason::Expired,
        (false, false) => ResetReason::Gap,
    };
    // One order of both: an event the stream lacks (sent live before it was stored) but this
    // instance holds is delivered in its place, not announced as a gap. Stable: of two frames
    // of one event, the stream's goes first and the other is passed over.
    let mut frames: Vec<&Frame> = stored.frames.iter().collect();
    for frame in memory {
        frames.push(frame);
    }
    frames.sort_by_key(|f| f.seq);
    for frame in frames {
        if frame.seq == 0 || frame.seq <= last {
            continue;
        }
        if frame.seq != last + 1 {
            if !allow_gap {
                return None;
            }
            out.push(Item::Reset {
                oldest: Some(frame.seq),
                reason: missing,
            });
        }
        last = frame.seq;
        out.push(Item::Event(frame.clone()));
    }
    if head.is_some_and(|head| head > last) {
        if !allow_gap {
            return None;
        }
        out.push(Item::Reset {
            oldest: None,
            reason: missing,
        });
    } else if head.is_none() && stored.none_retained && since > 0 && out.is_empty() {
        // The stream no longer holds even `since` itself, and this instance delivered nothing
        // it can vouch for: later events may have come and expired unseen. Nothing can tell,
        // so the client is told rather than left to trust state that may be stale.
        out.push(Item::Reset {
            oldest: None,
            reason: missing,
        });
    }
    Some(out)
}

/// Keeps at most `max.events` of the events in `items`, and `max.bytes` of their frames, the
/// newest: a client further behind than that gets a `limit` reset before the first one kept,
/// in place of the ones dropped.
pub fn keep_newest(mut items: Vec<Item>, max: Room) -> Vec<Item> {
    // How many of the events fit, counted from the newest.
    let (mut fit, mut bytes) = (0, 0);
    for item in items.iter().rev() {
        if let Item::Event(frame) = item {
            bytes += frame.text.len();
            if fit == max.events || bytes > max.bytes {
                break;
            }
            fit += 1;
        }
    }
    let events = items.iter().filter(|i| matches!(i, Item::Event(_))).count();
    let Some(mut drop) = events.checked_sub(fit).filter(|&n| n > 0) else {
        return items;
    };
    let cut = items
        .iter()
        .position(|item| match item {
            Item::Event(_) if drop == 0 => true,
            Item::Event(_) => {
                drop -= 1;
                false
            }
            Item::Reset { .. } => false,
        })
        .unwrap_or(items.len());
    let kept = items.split_off(cut);
    let oldest = kept.iter().find_map(|item| match item {
        Item::Event(frame) => Some(frame.seq),
        Item::Reset { .. } => None,
    });
    let mut out = Vec::with_capacity(kept.len() + 1);
    out.push(Item::Reset {
        oldest,
        reason: ResetReason::Limit,
    });
    out.extend(kept);
    out
}

/// The `events_reset` message as a frame of `topic`, queued like an event so that it keeps its
/// place among them.
pub fn reset_frame(
    frame_topic: TopicId,
    topic: &Topic,
    oldest: Option<u64>,
    reason: ResetReason,
) -> Frame {
    let reply = ServerReply::EventsReset {
        topic: topic.clone(),
        oldest,
        reason,
    };
    let text = serde_json::to_string(&reply).unwrap_or_default();
    Frame {
        topic: frame_topic,
        seq: 0,
        snapshot: false,
        text: Utf8Bytes::from(text),
        received: std::time::Instant::now(),
    }
}

#[cfg(test)]
mod tests;
