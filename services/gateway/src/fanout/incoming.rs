//! An event topic's incoming events while its dispatch fills a gap: the live ones that keep
//! arriving and the ones read back from the stream, held together in `seq` order and delivered
//! as soon as they follow on from the topic's head.
//!
//! A gap is filled from whichever source brings the missing event first. The poller's relay
//! sends again what JetStream did not acknowledge (a stream electing a leader, say), and that
//! send reaches subscribers live before the stream stores it: a dispatch that stopped reading
//! its subscription while it waited for the stream would find that copy only afterwards, drop
//! it as old once the gap was announced, and so announce an event it had.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt as _;
use pulse_proto::ResetReason;

use super::topic::{Push, Topic};
use crate::frame::{Frame, seq_of};
use crate::metrics::Metrics;
use crate::queue::Room;
use crate::replay::Order;

/// Where a held frame came from, for the metrics.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Live,
    Stream,
}

/// An event topic's NATS subscription and the frames held beyond a gap.
pub(super) struct Incoming {
    subscriber: async_nats::Subscriber,
    /// The subscription ended (the client is closed): nothing more arrives.
    ended: bool,
    held: BTreeMap<u64, (Frame, Source)>,
    bytes: usize,
    /// The most held at once; a live event beyond it is let go, to be read back later.
    room: Room,
}

impl Incoming {
    pub(super) fn new(subscriber: async_nats::Subscriber, room: Room) -> Self {
        Self {
            subscriber,
            ended: false,
            held: BTreeMap::new(),
            bytes: 0,
            room,
        }
    }

    /// The next message of the subscription; `None` once it ended.
    pub(super) async fn next(&mut self) -> Option<async_nats::Message> {
        if self.ended {
            return None;
        }
        let message = self.subscriber.next().await;
        self.ended = message.is_none();
        message
    }

    /// The most held at once, which is also what a burst of them may take of a connection's
    /// replay room.
    pub(super) fn room(&self) -> Room {
        self.room
    }

    /// The `seq` of the oldest frame held, if any.
    pub(super) fn first(&self) -> Option<u64> {
        self.held.keys().next().copied()
    }

    /// Whether frames are held beyond a gap (after [`Incoming::deliver_ready`], every frame
    /// still held is).
    pub(super) fn gapped(&self) -> bool {
        !self.held.is_empty()
    }

    /// Holds `frame` until it follows on from the head. A frame without `seq` has no place in
    /// the order and goes out at once. Without room, the newest held are let go to make it
    /// (or `frame` itself, when it is the newest): the topic then reads the stream again once
    /// this fill is over, so that what was let go is read back, not left for the next event.
    pub(super) fn hold(&mut self, topic: &Topic, frame: Frame, source: Source, metrics: &Metrics) {
        if frame.seq == 0 {
            topic.deliver_event(&frame, Push::Live, metrics);
            return;
        }
        if self.held.contains_key(&frame.seq) {
            if source == Source::Live {
                metrics.events_duplicate.inc();
            }
            return;
        }
        let len = frame.text.len();
        // One is always held, whatever its size (the stream's reads always give the newest).
        let full = |held: &Self| {
            !held.held.is_empty()
                && (held.held.len() >= held.room.events || held.bytes + len > held.room.bytes)
        };
        while full(self) {
            let newest = self.held.last_key_value().map(|(&seq, _)| seq);
            if newest.is_none_or(|newest| newest < frame.seq) {
                tracing::debug!(subject = %topic.subject, seq = frame.seq, "no room to hold an event; it is read back");
                topic.resync.notify_one();
                return;
            }
            if let Some((_, (let_go, _))) = self.held.pop_last() {
                self.bytes -= let_go.text.len();
            }
            topic.resync.notify_one();
        }
        self.bytes += len;
        self.held.insert(frame.seq, (frame, source));
    }

    /// Delivers the held frames that follow on from the head, in order, and lets go of those it
    /// already delivered; stops at the first gap.
    pub(super) fn deliver_ready(&mut self, topic: &Topic, metrics: &Metrics) {
        let mut filled = 0;
        while let Some(entry) = self.held.first_entry() {
            let (frame, source) = entry.get();
            let order = topic.deliver_event(frame, Push::Held(self.room), metrics);
            let source = *source;
            match (order, source) {
                (Order::Gap { .. }, _) => break,
                (Order::Next, Source::Stream) => filled += 1,
                (Order::Duplicate, Source::Live) => {
                    metrics.events_duplicate.inc();
                }
                _ => {}
            }
            let (frame, _) = entry.remove();
            self.bytes -= frame.text.len();
        }
        metrics.events_filled.inc_by(filled);
    }

    /// Delivers every frame held, each gap before one announced with a reset for `reason`:
    /// what the stream did not give is given up on.
    pub(super) fn deliver_across_gaps(
        &mut self,
        topic: &Topic,
        metrics: &Metrics,
        reason: ResetReason,
    ) {
        loop {
            self.deliver_ready(topic, metrics);
            let Some(first) = self.first() else { return };
            topic.reset_all(Some(first), reason, self.room, metrics);
        }
    }

    /// Takes the topic's live events for `pause`, holding each and delivering what follows on;
    /// sooner when they fill the gap there was.
    pub(super) async fn wait(&mut self, topic: &Topic, metrics: &Metrics, pause: Duration) {
        let until = tokio::time::Instant::now() + pause;
        let gapped = self.gapped();
        loop {
            let message = tokio::select! {
                message = self.subscriber.next(), if !self.ended => message,
                () = tokio::time::sleep_until(until) => return,
            };
            let Some(message) = message else {
                self.ended = true;
                continue;
            };
            let span = topic.span(message.headers.as_ref());
            if let Some(frame) = frame_of(topic, message, metrics) {
                span.in_scope(|| {
                    self.hold(topic, frame, Source::Live, metrics);
                    self.deliver_ready(topic, metrics);
                });
                if gapped && !self.gapped() {
                    return;
                }
            }
        }
    }
}

/// The frame of a message NATS brought for `topic`, counted; `None` (and a warning) for one
/// that is not UTF-8.
pub(super) fn frame_of(
    topic: &Topic,
    message: async_nats::Message,
    metrics: &Metrics,
) -> Option<Frame> {
    metrics.messages_in.inc();
    let seq = seq_of(message.headers.as_ref());
    let Ok(text) = Utf8Bytes::try_from(message.payload) else {
        tracing::warn!(subject = %topic.subject, "dropping a message that is not UTF-8");
        return None;
    };
    Some(Frame {
        topic: topic.id,
        seq,
        snapshot: false,
        text,
        received: std::time::Instant::now(),
    })
}
