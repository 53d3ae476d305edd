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

use axum::extract::ws::Utf8Bytes;
use pulse_proto::{ResetReason, ServerReply, Topic};

use crate::frame::Frame;
use crate::history::Stored;
use crate::ids::{ConnId, TopicId};

/// Bytes of recent frames one topic keeps at most, whatever `PULSE_EVENTS_CACHE` allows: a
/// topic of large events must not hold hundreds of them in memory per gateway.
pub const RECENT_BYTES_MAX: usize = 1024 * 1024;

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
    /// Bytes of the frames in `recent`.
    recent_bytes: usize,
    cap: usize,
    /// Clients catching up from the stream, with the live frames held for them meanwhile.
    pub catching_up: HashMap<ConnId, Vec<Frame>>,
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        Self {
            head: None,
            empty_at_read: false,
            floor: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            cap,
            catching_up: HashMap::new(),
        }
    }

    /// Where an event with `seq` stands. `seq` 0 (a publisher that sets none) is always next.
    pub fn order(&self, seq: u64) -> Order {
        match self.head {
            _ if seq == 0 => Order::Next,
            None => match self.floor {
                Some(floor) if seq > floor + 1 => Order::Gap { head: floor },
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
        if self
            .recent
            .back()
            .is_some_and(|last| last.seq + 1 != frame.seq)
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
            if let Some(oldest) = self.recent.pop_front() {
                self.recent_bytes -= oldest.text.len();
            }
        }
        self.recent_bytes += bytes;
        self.recent.push_back(frame.clone());
    }

    fn clear_recent(&mut self) {
        self.recent.clear();
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
    /// delivered events: then the ones below `first` were missed.
    pub fn start_at_retained(&mut self, first: u64) -> bool {
        if !self.empty_at_read || first == 0 {
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
    // from one that retains later ones, they were lost on the way.
    let missing = if stored.none_retained {
        ResetReason::Expired
    } else {
        ResetReason::Gap
    };
    let mut memory: Vec<&Frame> = memory.collect();
    memory.sort_by_key(|f| f.seq);
    for frame in stored.frames.iter().chain(memory) {
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
            reason: ResetReason::Expired,
        });
    }
    Some(out)
}

/// Keeps at most `max` of the events in `items`, the newest: a client further behind than
/// that gets a `limit` reset before the first one kept, in place of the ones dropped.
pub fn keep_newest(mut items: Vec<Item>, max: usize) -> Vec<Item> {
    let events = items.iter().filter(|i| matches!(i, Item::Event(_))).count();
    let Some(mut drop) = events.checked_sub(max).filter(|&n| n > 0) else {
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
mod tests {
    use std::time::Instant;

    use super::*;

    fn f(seq: u64) -> Frame {
        Frame {
            topic: 1,
            seq,
            snapshot: false,
            text: format!("e{seq}").into(),
            received: Instant::now(),
        }
    }

    fn seqs(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(f) => f.seq.to_string(),
                Item::Reset { oldest, reason } => format!("reset({oldest:?},{reason:?})"),
            })
            .collect()
    }

    fn stored(frames: &[u64]) -> Stored {
        Stored {
            frames: frames.iter().map(|&s| f(s)).collect(),
            ..Default::default()
        }
    }

    /// What the stream answers when it retains no event of the topic.
    fn none_retained() -> Stored {
        Stored {
            none_retained: true,
            ..Default::default()
        }
    }

    #[test]
    fn live_events_are_ordered_against_the_head() {
        let mut log = EventLog::new(4);
        assert_eq!(
            log.order(7),
            Order::Next,
            "the first one seen sets the head"
        );
        log.advance(&f(7));
        assert_eq!(log.order(8), Order::Next);
        assert_eq!(log.order(7), Order::Duplicate);
        assert_eq!(log.order(3), Order::Duplicate);
        assert_eq!(log.order(10), Order::Gap { head: 7 });
        assert_eq!(
            log.order(0),
            Order::Next,
            "an event without seq is never held back"
        );
    }

    #[test]
    fn memory_serves_a_resume_it_covers() {
        let mut log = EventLog::new(3);
        for seq in 1..=5 {
            log.advance(&f(seq));
        }
        // Recent holds 3, 4, 5.
        let got = |since| {
            log.from_memory(since)
                .map(|v| v.iter().map(|f| f.seq).collect::<Vec<_>>())
        };
        assert_eq!(got(5), Some(vec![]));
        assert_eq!(got(4), Some(vec![5]));
        assert_eq!(got(2), Some(vec![3, 4, 5]));
        assert_eq!(got(1), None, "event 2 is no longer in memory");
        assert_eq!(
            got(9),
            None,
            "a client ahead of this instance is served by the stream"
        );
    }

    #[test]
    fn a_head_learned_after_subscribers_were_answered_delivers_what_they_are_owed() {
        // The read of the newest stored event answered late: event 5 was stored meanwhile,
        // and its live copy is still on its way to subscribers that got no `seq`.
        let mut log = EventLog::new(4);
        log.learn_floor(5);
        assert_eq!(
            log.known_head(),
            None,
            "a floor is never told as a position"
        );
        assert_eq!(log.order(4), Order::Next, "nothing was delivered here yet");
        assert_eq!(
            log.order(5),
            Order::Next,
            "event 5 is owed to the subscribers"
        );
        assert_eq!(log.order(6), Order::Next);
        assert_eq!(
            log.order(8),
            Order::Gap { head: 5 },
            "events 6 and 7 were missed: read back from the floor"
        );
        assert_eq!(log.fill_from(), Some(5));
        log.advance(&f(5));
        assert_eq!(
            log.order(5),
            Order::Duplicate,
            "once delivered, the head rules"
        );
        assert_eq!(log.fill_from(), Some(5));

        // A floor of 0 (the stream held none) still starts at the oldest retained event.
        let mut empty = EventLog::new(4);
        empty.learn_floor(0);
        assert_eq!(empty.order(3), Order::Gap { head: 0 });
        assert!(empty.start_at_retained(3));
        assert_eq!(empty.order(3), Order::Next);

        // A head learned in time is a head.
        let mut timely = EventLog::new(4);
        timely.learn_head(5);
        assert_eq!(timely.order(5), Order::Duplicate);
        timely.learn_floor(9);
        assert_eq!(timely.fill_from(), Some(5), "a floor never moves a head");
    }

    #[test]
    fn the_recent_frames_are_bounded_in_bytes_too() {
        let big = |seq| Frame {
            text: "x".repeat(RECENT_BYTES_MAX / 4).into(),
            ..f(seq)
        };
        let mut log = EventLog::new(256);
        for seq in 1..=10 {
            log.advance(&big(seq));
        }
        let kept: Vec<u64> = log.recent().map(|f| f.seq).collect();
        assert_eq!(
            kept,
            [7, 8, 9, 10],
            "four quarter-MiB frames fit in the bound"
        );
        assert_eq!(log.from_memory(6).map(|v| v.len()), Some(4));
        assert_eq!(
            log.from_memory(5),
            None,
            "older ones are read from the stream"
        );
        // The first small frame over the bound pushes the oldest large one out.
        for seq in 11..=20 {
            log.advance(&f(seq));
        }
        assert_eq!(log.recent().next().map(|f| f.seq), Some(8));
        assert_eq!(log.recent().count(), 13);
    }

    #[test]
    fn a_gap_clears_the_recent_frames() {
        let mut log = EventLog::new(8);
        log.advance(&f(1));
        log.advance(&f(2));
        log.advance(&f(5));
        assert_eq!(log.from_memory(2), None);
        assert_eq!(log.from_memory(4).map(|v| v.len()), Some(1));
    }

    #[test]
    fn splice_joins_stream_and_live_without_gap_or_duplicate() {
        let held = [f(6), f(7), f(8)];
        let out = splice(2, &stored(&[3, 4, 5, 6]), held.iter(), None, false).unwrap();
        assert_eq!(seqs(&out), ["3", "4", "5", "6", "7", "8"]);
    }

    #[test]
    fn splice_waits_for_a_gap_then_reports_it() {
        let held = [f(9)];
        assert!(splice(2, &stored(&[3, 4]), held.iter(), None, false).is_none());
        let out = splice(2, &stored(&[3, 4]), held.iter(), None, true).unwrap();
        assert_eq!(seqs(&out), ["3", "4", "reset(Some(9),Gap)", "9"]);
    }

    #[test]
    fn splice_reports_expired_and_limited_history_first() {
        let mut s = stored(&[10, 11]);
        s.missing_before = Some(10);
        let out = splice(2, &s, [].iter(), None, false).unwrap();
        assert_eq!(seqs(&out), ["reset(Some(10),Expired)", "10", "11"]);
        s.limited = true;
        let out = splice(2, &s, [].iter(), None, false).unwrap();
        assert_eq!(seqs(&out), ["reset(Some(10),Limit)", "10", "11"]);
    }

    #[test]
    fn splice_reports_events_the_stream_no_longer_holds_as_expired() {
        let none = none_retained();
        let held = [f(8), f(9)];
        assert!(splice(2, &none, held.iter(), Some(9), false).is_none());
        let out = splice(2, &none, held.iter(), Some(9), true).unwrap();
        assert_eq!(seqs(&out), ["reset(Some(8),Expired)", "8", "9"]);
    }

    #[test]
    fn splice_leaves_no_client_short_of_the_head_without_a_reset() {
        let none = none_retained();
        assert!(splice(2, &none, [].iter(), Some(9), false).is_none());
        let out = splice(2, &none, [].iter(), Some(9), true).unwrap();
        assert_eq!(seqs(&out), ["reset(None,Expired)"]);
        let out = splice(2, &stored(&[]), [f(3)].iter(), Some(5), true).unwrap();
        assert_eq!(seqs(&out), ["3", "reset(None,Gap)"]);
        let out = splice(9, &none, [].iter(), Some(9), false).unwrap();
        assert!(out.is_empty(), "a client at the head misses nothing");
    }

    #[test]
    fn splice_cannot_vouch_for_a_since_the_stream_and_this_instance_no_longer_know() {
        let none = none_retained();
        let out = splice(9, &none, [].iter(), None, false).unwrap();
        assert_eq!(seqs(&out), ["reset(None,Expired)"]);
        let out = splice(9, &none, [f(10)].iter(), None, false).unwrap();
        assert_eq!(
            seqs(&out),
            ["10"],
            "the next event live shows nothing was missed"
        );
        let out = splice(0, &none, [].iter(), None, false).unwrap();
        assert!(out.is_empty(), "since 0 asks only for what is retained");
        let out = splice(9, &stored(&[]), [].iter(), None, false).unwrap();
        assert!(
            out.is_empty(),
            "the stream still holds `since`: nothing after it"
        );
    }

    #[test]
    fn keep_newest_replaces_the_oldest_events_by_one_limit_reset() {
        let items: Vec<Item> = (3..=8).map(|s| Item::Event(f(s))).collect();
        assert_eq!(seqs(&keep_newest(items.clone(), 6)).len(), 6);
        assert_eq!(
            seqs(&keep_newest(items, 2)),
            ["reset(Some(7),Limit)", "7", "8"]
        );
        let mut items = vec![Item::Reset {
            oldest: Some(3),
            reason: ResetReason::Expired,
        }];
        items.extend((3..=5).map(|s| Item::Event(f(s))));
        items.push(Item::Reset {
            oldest: None,
            reason: ResetReason::Gap,
        });
        assert_eq!(
            seqs(&keep_newest(items, 1)),
            ["reset(Some(5),Limit)", "5", "reset(None,Gap)"]
        );
    }

    #[test]
    fn splice_skips_what_the_client_already_has() {
        let held = [f(4), f(5)];
        let out = splice(4, &stored(&[]), held.iter(), None, false).unwrap();
        assert_eq!(seqs(&out), ["5"]);
    }
}
