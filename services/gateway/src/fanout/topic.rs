//! One subject in use on this instance: its local subscribers, where its NATS subscription
//! stands, its current value (snapshot subjects) or its order (event subjects), and the pushes
//! to every subscriber's queue.
//!
//! A topic's life is one [`Lifecycle`] value that only its transition methods change, so
//! every state it can be in is written down in one place rather than pieced together from
//! flags that must agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use pulse_proto::{ResetReason, Subject};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::frame::Frame;
use crate::ids::{ConnId, TopicId};
use crate::metrics::Metrics;
use crate::queue::{ClientQueue, Pushed, Room, supersedes};
use crate::replay::{self, CacheBudget, EventLog, Order};

/// Where a topic's NATS subscription stands.
///
/// `New` → `Starting` → `Live` → `Stopped`, each step by one method of [`Topic`]. A start that
/// fails leaves the topic `New` (the next subscriber tries again); the last subscriber leaving
/// makes it `Stopped` from any state, and nothing leaves `Stopped`.
#[derive(Debug)]
enum Lifecycle {
    /// Made for its first subscriber; no NATS subscription yet.
    New,
    /// Subscribed on NATS with its dispatch task running; not yet confirmed by the server.
    Starting(AbortHandle),
    /// In place, and counted in the `nats_subscriptions` gauge.
    Live(AbortHandle),
    /// The last subscriber left: the dispatch task is ended and the topic no longer counted.
    Stopped,
}

/// How an event goes into its subscribers' queues.
#[derive(Debug, Clone, Copy)]
pub(super) enum Push {
    /// As it arrived: within each queue's event cap.
    Live,
    /// With others the gateway held back (read back from the stream, held beyond a gap),
    /// all at once: within each connection's replay room ([`ClientQueue::push_held`]).
    Held(Room),
}

impl Push {
    /// The room a burst of held events may take: none beyond the cap for live ones.
    fn room(self) -> Room {
        match self {
            Push::Live => Room::default(),
            Push::Held(room) => room,
        }
    }

    /// Pushes `frame` into `queue` this way.
    fn push_to(self, queue: &ClientQueue, frame: &Frame) -> Pushed {
        match self {
            Push::Live => queue.push_event(frame.clone()),
            Push::Held(room) => queue.push_held(frame.clone(), room),
        }
    }
}

/// A snapshot subject's current value on this instance.
#[derive(Debug)]
enum Current {
    /// Nothing seen, and the state stream not asked yet.
    Unasked,
    /// The state stream was asked, once per topic however many clients subscribe at the same
    /// moment: the answer is on its way, or nothing was retained and NATS brings the value.
    Asked,
    /// The newest value seen.
    Known(Frame),
}

/// A subject in use on this instance and its local subscribers.
pub struct Topic {
    pub id: TopicId,
    pub subject: Subject,
    pub(super) snapshot: bool,
    pub(super) subscribers: RwLock<HashMap<ConnId, Arc<ClientQueue>>>,
    lifecycle: Mutex<Lifecycle>,
    /// Held by the subscriber starting the NATS subscription, so the others wait for it
    /// instead of starting their own.
    pub(super) start: tokio::sync::Mutex<()>,
    /// Snapshot subjects: the current value.
    current: Mutex<Current>,
    /// Event subjects: order, recent events and catching-up clients.
    pub(super) log: Mutex<EventLog>,
    /// Event subjects: wakes the dispatch task to read what NATS may have dropped.
    pub(super) resync: Notify,
    /// Event subjects: the newest stored `seq` the periodic check last had read back, so that
    /// an event this instance cannot deliver (not UTF-8) is not read back on every check.
    pub(super) checked_up_to: AtomicU64,
    /// Event subjects: each resuming connection's catch-up task, aborted when the connection
    /// unsubscribes, so reads of the stream stop with the client that asked for them.
    pub(super) catch_ups: Mutex<HashMap<ConnId, AbortHandle>>,
    /// A read of the current value (snapshot subjects) or of the newest stored event (event
    /// subjects) is being retried: one at a time, however many callers ask for one.
    retrying: AtomicBool,
    /// Event subjects: most live events held for one client catching up, across its channels
    /// ([`ClientQueue::hold`]): they are replayed with the events read back, so the replay
    /// limit bounds them.
    held_max: usize,
}

impl Topic {
    /// A topic for `subject` without subscribers or NATS subscription; an event subject keeps
    /// its `cache` most recent events within what `budget` has left, and holds up to
    /// `held_max` live events for each client catching up.
    pub(super) fn new(
        id: TopicId,
        subject: Subject,
        cache: usize,
        budget: Arc<CacheBudget>,
        held_max: usize,
    ) -> Self {
        let snapshot = subject.is_snapshot();
        Self {
            id,
            subject,
            snapshot,
            subscribers: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(Lifecycle::New),
            start: tokio::sync::Mutex::new(()),
            current: Mutex::new(Current::Unasked),
            log: Mutex::new(EventLog::new(if snapshot { 0 } else { cache }, budget)),
            resync: Notify::new(),
            checked_up_to: AtomicU64::new(0),
            catch_ups: Mutex::new(HashMap::new()),
            retrying: AtomicBool::new(false),
            held_max,
        }
    }

    /// Whether its NATS subscription is in place.
    pub(super) fn is_live(&self) -> bool {
        matches!(*self.lifecycle.lock(), Lifecycle::Live(_))
    }

    /// Marks a read as being retried (see `retrying`): true for the one caller that is to
    /// retry it, until [`Topic::end_retry`].
    pub(super) fn begin_retry(&self) -> bool {
        !self.retrying.swap(true, Ordering::AcqRel)
    }

    pub(super) fn end_retry(&self) {
        self.retrying.store(false, Ordering::Release);
    }

    /// Whether the last subscriber left.
    pub(super) fn is_stopped(&self) -> bool {
        matches!(*self.lifecycle.lock(), Lifecycle::Stopped)
    }

    /// `New` → `Starting`: the NATS subscription's dispatch task runs. A topic stopped
    /// meanwhile ends the task at once and stays `Stopped`.
    pub(super) fn dispatching(&self, task: AbortHandle) {
        let mut lifecycle = self.lifecycle.lock();
        match &*lifecycle {
            Lifecycle::New => *lifecycle = Lifecycle::Starting(task),
            // Starting is one subscriber's job at a time: a second task is never wanted.
            Lifecycle::Starting(_) | Lifecycle::Live(_) | Lifecycle::Stopped => task.abort(),
        }
    }

    /// `Starting` → `Live`: the server has the subscription; it is counted from now on.
    pub(super) fn confirmed(&self, metrics: &Metrics) {
        let mut lifecycle = self.lifecycle.lock();
        if let Lifecycle::Starting(task) = &*lifecycle {
            *lifecycle = Lifecycle::Live(task.clone());
            metrics.nats_subscriptions.inc();
        }
    }

    /// Any state → `Stopped`: ends the dispatch task and the count, whichever there are.
    pub(super) fn stop(&self, metrics: &Metrics) {
        match std::mem::replace(&mut *self.lifecycle.lock(), Lifecycle::Stopped) {
            Lifecycle::New | Lifecycle::Stopped => {}
            Lifecycle::Starting(task) => task.abort(),
            Lifecycle::Live(task) => {
                task.abort();
                metrics.nats_subscriptions.dec();
            }
        }
    }

    /// The current value of a snapshot subject, when known.
    pub(super) fn current(&self) -> Option<Frame> {
        match &*self.current.lock() {
            Current::Known(frame) => Some(frame.clone()),
            Current::Unasked | Current::Asked => None,
        }
    }

    /// `Unasked` → `Asked`: true for the one caller that is to read the state stream.
    pub(super) fn ask_current(&self) -> bool {
        let mut current = self.current.lock();
        let unasked = matches!(*current, Current::Unasked);
        if unasked {
            *current = Current::Asked;
        }
        unasked
    }

    /// Keeps `frame` as the current value if it is newer than the one held.
    pub(super) fn remember(&self, frame: &Frame) -> bool {
        let mut current = self.current.lock();
        match &*current {
            Current::Known(held) if !supersedes(frame, held) => false,
            _ => {
                *current = Current::Known(frame.clone());
                true
            }
        }
    }

    /// Pushes an event to every local subscriber (holding it for those catching up) if it is
    /// the next in order; returns where it stood.
    pub(super) fn deliver_event(&self, frame: &Frame, push: Push, metrics: &Metrics) -> Order {
        let mut log = self.log.lock();
        self.deliver_locked(&mut log, frame, None, push, metrics)
    }

    /// [`Topic::deliver_event`] with the log already locked, skipping `except`.
    pub(super) fn deliver_locked(
        &self,
        log: &mut EventLog,
        frame: &Frame,
        except: Option<ConnId>,
        push: Push,
        metrics: &Metrics,
    ) -> Order {
        let order = log.order(frame.seq);
        if order != Order::Next {
            return order;
        }
        if log.lost_unplaced && log.fill_from().is_none() && frame.seq != 0 {
            // Events may have been lost while nobody knew where the topic stood: said before
            // the first event after them.
            log.lost_unplaced = false;
            let (oldest, reason) = (Some(frame.seq), ResetReason::Unavailable);
            self.reset_locked(log, oldest, reason, push.room(), metrics);
        }
        log.advance(frame);
        let subscribers = self.subscribers.read();
        if log.catching_up.is_empty() && except.is_none() {
            // The common case: nobody is catching up, so no per-subscriber lookup.
            for queue in subscribers.values() {
                push.push_to(queue, frame);
            }
            metrics.events_delivered.inc();
            return order;
        }
        for (conn, queue) in subscribers.iter() {
            if Some(*conn) == except {
                continue;
            }
            match log.catching_up.get_mut(conn) {
                // Waiting for its turn to read (a few catch-ups run at once per client), a
                // client resuming many busy channels must not be closed for what arrives
                // meanwhile: those are replayed, and held up to the replay limit across the
                // client's channels.
                Some(held) if queue.hold(queue.event_cap().max(self.held_max)) => {
                    held.push(frame.clone())
                }
                Some(_) => queue.overflow_now(),
                None => {
                    push.push_to(queue, frame);
                }
            }
        }
        metrics.events_delivered.inc();
        order
    }

    /// Tells every subscriber not catching up that events were missed, in the burst of held
    /// events it stands among (within `room`, see [`Push::Held`]), and forgets the head: the
    /// order starts again at the next event. Both under one lock of the log: a subscriber
    /// joining between them would be answered from the old head, then given the events past
    /// the gap without the reset.
    pub(super) fn reset_all(
        &self,
        oldest: Option<u64>,
        reason: ResetReason,
        room: Room,
        metrics: &Metrics,
    ) {
        self.reset_and_restart_locked(&mut self.log.lock(), oldest, reason, room, metrics);
    }

    /// [`Topic::reset_all`] with the log already locked.
    pub(super) fn reset_and_restart_locked(
        &self,
        log: &mut EventLog,
        oldest: Option<u64>,
        reason: ResetReason,
        room: Room,
        metrics: &Metrics,
    ) {
        self.reset_locked(log, oldest, reason, room, metrics);
        log.forget_head();
    }

    /// Tells the subscribers as [`Topic::reset_all`] does, with the log already locked, but
    /// keeps the head: a caller whose order starts again forgets it under the same lock.
    pub(super) fn reset_locked(
        &self,
        log: &EventLog,
        oldest: Option<u64>,
        reason: ResetReason,
        room: Room,
        metrics: &Metrics,
    ) {
        let Subject::Events(_, name) = &self.subject else {
            return;
        };
        let frame = replay::reset_frame(self.id, name, oldest, reason);
        let subscribers = self.subscribers.read();
        for (conn, queue) in subscribers.iter() {
            if !log.catching_up.contains_key(conn) {
                queue.push_held(frame.clone(), room);
                metrics.event_resets.inc();
            }
        }
    }

    /// Pushes `frame` to every local subscriber; returns how many got it.
    pub(super) fn deliver(&self, frame: &Frame, metrics: &Metrics) -> usize {
        if self.snapshot && !self.remember(frame) {
            return 0;
        }
        let subscribers = self.subscribers.read();
        let mut conflated = 0;
        for queue in subscribers.values() {
            let pushed = if self.snapshot {
                queue.push_snapshot(frame.clone())
            } else {
                queue.push_event(frame.clone())
            };
            if pushed == Pushed::Conflated {
                conflated += 1;
            }
        }
        metrics.conflated.inc_by(conflated);
        subscribers.len()
    }

    /// Hands a snapshot topic's current value, `frame`, read from the state stream, to every
    /// subscriber (each queue keeps the newest), unless a newer one came meanwhile: that one
    /// went out, or is going out, and must not be followed by this older one. The current value
    /// stays locked meanwhile, so a newer one arriving now is handed out after it.
    pub(super) fn push_current(&self, frame: &Frame) {
        let current = self.current.lock();
        if !matches!(&*current, Current::Known(held) if held.seq == frame.seq) {
            return;
        }
        let subscribers = self.subscribers.read();
        for queue in subscribers.values() {
            queue.push_snapshot(frame.clone());
        }
    }

    /// A span for delivering one message. A message that carries a trace context gets a span
    /// continuing that trace, so a trace runs from the database change through the poller to
    /// the fan-out. Untraced messages (the common case) cost no span at the default level.
    pub(super) fn span(&self, headers: Option<&async_nats::HeaderMap>) -> tracing::Span {
        let traced = headers.is_some_and(|h| h.get(pulse_proto::headers::TRACEPARENT).is_some());
        if traced {
            let span = tracing::info_span!(
                "fanout",
                subject = %self.subject,
                recipients = self.subscribers.read().len()
            );
            pulse_common::trace_headers::continue_from(&span, headers);
            span
        } else {
            tracing::trace_span!("fanout", subject = %self.subject)
        }
    }
}

#[cfg(test)]
mod tests {
    use pulse_proto::TenantId;

    use super::*;

    fn topic() -> Topic {
        let tenant: TenantId = "acme".parse().expect("a valid tenant");
        let budget = CacheBudget::new(0, Default::default());
        Topic::new(1, Subject::Alerts(tenant), 0, budget, 0)
    }

    fn task() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    #[tokio::test]
    async fn a_topic_is_counted_only_while_live() {
        let metrics = Metrics::register(&mut Default::default());
        let topic = topic();
        let dispatch = task();
        topic.dispatching(dispatch.clone());
        assert!(!topic.is_live());
        assert_eq!(metrics.nats_subscriptions.get(), 0);
        topic.confirmed(&metrics);
        assert!(topic.is_live());
        assert_eq!(metrics.nats_subscriptions.get(), 1);
        topic.stop(&metrics);
        assert!(topic.is_stopped());
        assert_eq!(metrics.nats_subscriptions.get(), 0);
        tokio::task::yield_now().await;
        assert!(dispatch.is_finished(), "stopping ends the dispatch task");
        topic.stop(&metrics);
        assert_eq!(
            metrics.nats_subscriptions.get(),
            0,
            "stopping twice counts once"
        );
    }

    #[tokio::test]
    async fn a_topic_stopped_while_starting_ends_its_task_and_is_never_counted() {
        let metrics = Metrics::register(&mut Default::default());
        let topic = topic();
        topic.stop(&metrics);
        let dispatch = task();
        topic.dispatching(dispatch.clone());
        topic.confirmed(&metrics);
        assert!(topic.is_stopped());
        assert_eq!(metrics.nats_subscriptions.get(), 0);
        tokio::task::yield_now().await;
        assert!(dispatch.is_finished());
    }

    #[test]
    fn the_state_stream_is_asked_once_and_only_newer_values_are_kept() {
        let topic = topic();
        assert!(topic.ask_current());
        assert!(!topic.ask_current());
        let frame = |seq| Frame {
            topic: 1,
            seq,
            snapshot: true,
            text: format!("v{seq}").into(),
            received: std::time::Instant::now(),
        };
        assert!(topic.remember(&frame(2)));
        assert!(!topic.remember(&frame(1)));
        assert!(!topic.remember(&frame(2)));
        assert_eq!(topic.current().map(|f| f.seq), Some(2));
        assert!(!topic.ask_current(), "a known value is not asked for");
    }
}
