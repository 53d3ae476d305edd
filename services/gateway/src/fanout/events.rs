//! Event subjects: every event delivered once and in `seq` order, a gap filled from the
//! `PULSE_EVENTS` stream before going on, and a subscriber that gives `since` brought up to
//! date from the topic's recent events or from the stream (see [`crate::replay`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pulse_proto::{ResetReason, Subject};
use tracing::Instrument as _;

use super::incoming::{self, Incoming, Source};
use super::topic::{Push, Topic};
use super::within_barrier;
use crate::frame::Frame;
use crate::history::{self, History};
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::queue::{ClientQueue, Room};
use crate::replay::{self, EventLog, Item, Order};

mod place;

/// How often a catching-up client's history is read again while a gap remains (an event
/// delivered live may reach the stream a moment later).
const SPLICE_ATTEMPTS: usize = 3;
/// How long resumes wait for the events stream's leader to answer, while reads end on a
/// replica's word or fail: a new leader is elected within seconds.
const CONFIRM_WAIT: Duration = Duration::from_secs(15);
/// The pause between two such reads.
const CONFIRM_PAUSE: Duration = Duration::from_millis(250);
/// How long after the events stream's reads were last unsettled (a leader elected), or after
/// this instance's NATS link came back, a gap may still be filled by the relay: it sends again
/// what JetStream did not acknowledge within its deadline (5 s), on its next pass.
const RESEND_WAIT: Duration = Duration::from_secs(10);
/// The pause between two reads of a gap meanwhile (the relay's send reaches the topic live
/// too, and fills the gap at once).
const RESEND_PAUSE: Duration = Duration::from_secs(1);
/// How long writing the SUB out may take when the head read was too slow.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the periodic check leaves an event it found stored but not delivered here to
/// arrive live before it reads it back: the stream stores an event before this instance
/// receives it, and a busy topic is nearly always an event or two behind for a moment.
const ON_ITS_WAY: Duration = Duration::from_secs(1);

/// How event subjects are served.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Recent events kept per event subject for clients resuming with `since`.
    pub cache: usize,
    /// Bytes of recent events all event subjects keep together.
    pub cache_bytes: usize,
    /// Most events replayed to one resuming client, and waiting for one connection at once
    /// across all its channels; more missed ones end in a reset.
    pub replay_max: usize,
    /// Most bytes of events one read of the stream holds (the newest are kept), and replayed
    /// events waiting for one connection at once across its channels.
    pub replay_max_bytes: usize,
    /// Most distinct subjects one tenant may have in use on this instance.
    pub subjects_per_tenant: usize,
    /// Most of those one user (a token's `sub`) may have brought into use and still in use,
    /// so that one user cannot take the whole tenant's budget.
    pub subjects_per_user: usize,
}

impl EventLimits {
    /// What one connection may have waiting of replayed events, across its channels.
    fn replay_room(&self) -> Room {
        Room {
            events: self.replay_max,
            bytes: self.replay_max_bytes,
        }
    }
}

/// What every event topic's delivery shares: the stream's history, metrics and limits.
#[derive(Clone)]
pub(super) struct Events {
    inner: Arc<Shared>,
}

struct Shared {
    nats: async_nats::Client,
    history: History,
    metrics: Metrics,
    limits: EventLimits,
    /// When this instance's NATS link last came back.
    reconnected: parking_lot::Mutex<Option<Instant>>,
}

impl Events {
    pub(super) fn new(nats: async_nats::Client, metrics: Metrics, limits: EventLimits) -> Self {
        let history = History::new(
            async_nats::jetstream::new(nats.clone()),
            metrics.event_history_gets.clone(),
        );
        Self {
            inner: Arc::new(Shared {
                nats,
                history,
                metrics,
                limits,
                reconnected: parking_lot::Mutex::new(None),
            }),
        }
    }

    /// Decides, with the topic's log locked, how a subscriber resuming from `since` catches
    /// up: from the recent events when they reach back far enough (queued at once), else from
    /// the stream (true: its live events are held until [`Events::catch_up`] joins both).
    pub(super) fn resume(
        &self,
        topic: &Topic,
        log: &mut EventLog,
        conn: ConnId,
        queue: &ClientQueue,
        since: u64,
    ) -> bool {
        match topic.is_live().then(|| log.from_memory(since)).flatten() {
            Some(frames) => {
                let items = frames.into_iter().map(Item::Event).collect();
                self.push_replay(queue, |room| {
                    self.frames(topic, replay::keep_newest(items, room))
                });
                false
            }
            None => {
                log.catching_up.insert(conn, Vec::new());
                true
            }
        }
    }

    /// Queues the frames of a replay `make` gives for the connection's replay room left, for
    /// `queue`'s client; their bytes count as waiting until they are written.
    fn push_replay(&self, queue: &ClientQueue, make: impl FnOnce(Room) -> Vec<Frame>) {
        queue.push_replay(self.inner.limits.replay_room(), make);
    }

    /// The frames of a replay, counted in the metrics: its events, and its resets as
    /// `events_reset` messages in their place.
    fn frames(&self, topic: &Topic, items: Vec<Item>) -> Vec<Frame> {
        let metrics = &self.inner.metrics;
        let Subject::Events(_, name) = &topic.subject else {
            return Vec::new();
        };
        let mut replayed = 0;
        let frames = items
            .into_iter()
            .map(|item| match item {
                Item::Event(frame) => {
                    replayed += 1;
                    frame
                }
                Item::Reset { oldest, reason } => {
                    metrics.event_resets.inc();
                    replay::reset_frame(topic.id, name, oldest, reason)
                }
            })
            .collect();
        metrics.events_replayed.inc_by(replayed);
        frames
    }

    /// Brings a catching-up client from `since` to the live events: reads the stream, then
    /// joins it with the recent and held frames under the log's lock.
    pub(super) async fn catch_up(
        self,
        topic: Arc<Topic>,
        conn: ConnId,
        queue: Arc<ClientQueue>,
        since: u64,
    ) {
        let metrics = &self.inner.metrics;
        let started = Instant::now();
        // A few at a time per client, each reading no more than the client may still be sent:
        // a client resuming hundreds of channels at once must not have hundreds of full
        // replays read and held, only to drop all but the first.
        let Some(_turn) = queue.catch_up_turn().await else {
            return;
        };
        let mut attempt = 0;
        loop {
            let room = queue.replay_room(self.inner.limits.replay_room());
            let read = self
                .inner
                .history
                .read_after(
                    &topic.subject,
                    topic.id,
                    since,
                    room.events.max(1),
                    room.bytes,
                )
                .await;
            // A read that nothing answered in time, or that ended on a replica's word while
            // the stream's leader does not answer, may be short: it is made again until the
            // leader answers (an election lasts seconds), the live events held for the client
            // meanwhile. Once the stream has been so for `CONFIRM_WAIT`, what was read is
            // taken, a failure ending in an `unavailable` reset.
            if history::unsettled(&read) && self.inner.history.unsettled_for_less_than(CONFIRM_WAIT)
            {
                if !topic.log.lock().catching_up.contains_key(&conn) {
                    return; // unsubscribed meanwhile
                }
                tokio::time::sleep(CONFIRM_PAUSE).await;
                continue;
            }
            attempt += 1;
            if let Ok(stored) = &read {
                metrics
                    .events_read_for_replay
                    .inc_by(stored.frames.len() as u64);
            }
            // Under the log's lock: either the client is caught up (and this returns), or an
            // event sent live was not stored yet and the stream is read again after a pause.
            'locked: {
                let mut log = topic.log.lock();
                // Only this task's own catch-up: one aborted while it ran on (an unsubscribe and
                // a new subscribe from another `since` in between) must not splice its `since`
                // into the new one's entry and end it.
                let own = topic
                    .catch_ups
                    .lock()
                    .get(&conn)
                    .is_some_and(|task| Some(task.id()) == tokio::task::try_id());
                let Some(held) = log.catching_up.get(&conn).filter(|_| own) else {
                    return; // unsubscribed meanwhile
                };
                let items = match &read {
                    Ok(stored) => {
                        let memory = log.recent().chain(held.iter());
                        let last = attempt == SPLICE_ATTEMPTS;
                        match replay::splice(since, stored, memory, log.known_head(), last) {
                            Some(items) => items,
                            // An event sent live before it was stored: read again shortly.
                            None => break 'locked,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(subject = %topic.subject, error = %e, "cannot replay events");
                        // What arrived live since the subscribe still follows, after the reset.
                        let mut items = vec![Item::Reset {
                            oldest: held.first().map(|f| f.seq),
                            reason: ResetReason::Unavailable,
                        }];
                        items.extend(held.iter().cloned().map(Item::Event));
                        items
                    }
                };
                if let Some(held) = log.catching_up.remove(&conn) {
                    queue.release_held(held.len());
                }
                // Events the stream holds but this instance had not delivered yet are the topic's
                // next ones for every other subscriber too; their live copies become duplicates.
                let (mut ahead, mut replayed) = (Vec::new(), 0);
                self.push_replay(&queue, |room| {
                    let frames = self.frames(&topic, replay::keep_newest(items, room));
                    ahead = frames
                        .iter()
                        .filter(|f| log.head.is_some_and(|head| f.seq > head))
                        .cloned()
                        .collect();
                    replayed = frames.len();
                    frames
                });
                let push = Push::Held(self.inner.limits.replay_room());
                for frame in &ahead {
                    if topic.deliver_locked(&mut log, frame, Some(conn), push, metrics)
                        != Order::Next
                    {
                        break;
                    }
                }
                if let Ok(stored) = &read
                    && let Some(last) = stored.frames.last()
                {
                    log.learn_floor(last.seq);
                    self.tell_lost(&topic, &mut log);
                }
                drop(log);
                tracing::debug!(
                    subject = %topic.subject, since, replayed, took = ?started.elapsed(),
                    "client caught up"
                );
                return;
            }
            tokio::time::sleep(splice_pause(attempt)).await;
        }
    }

    /// Waits until the NATS server has handled this connection's earlier commands, so that a
    /// client told "subscribed" gets every message published after that reply. A SUB is only
    /// written to the socket by `subscribe`; without this, a message published at once from
    /// another connection could reach the server first and be missed.
    ///
    /// The server handles a connection's commands in order, so any reply to a request sent
    /// after the SUB proves it is in place. An event subject reads its newest stored event,
    /// which is also where this instance's order starts (snapshot subjects read their current
    /// value: `CurrentValues::server_barrier`). It is a request the gateway's NATS permissions
    /// allow.
    ///
    /// A JetStream that answers slowly holds the subscribe at most [`BARRIER_WAIT`](super::BARRIER_WAIT): then the
    /// SUB is written out (the client offers no round trip of its own, so this is no proof the
    /// server has it) and the subscriber gets no `seq` in `subscribed`, as the protocol allows.
    /// The read's answer then only sets a floor: events up to it may still be on their way
    /// here, and that subscriber is owed them.
    pub(super) async fn server_barrier(&self, topic: &Arc<Topic>) {
        let shared = &self.inner;
        // Disconnected: the SUB is sent again on reconnect; there is nothing to wait for.
        if shared.nats.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let (events, t) = (self.clone(), topic.clone());
        let read = async move { events.inner.history.latest(&t.subject).await };
        let (events, t) = (self.clone(), topic.clone());
        let late = move |result| events.learn_head(&t, result, EventLog::learn_floor);
        match within_barrier(read, late).await {
            Some(result) => self.learn_head(topic, result, EventLog::learn_head),
            None => {
                if tokio::time::timeout(FLUSH_TIMEOUT, shared.nats.flush())
                    .await
                    .is_err()
                {
                    tracing::debug!(subject = %topic.subject, "the SUB not written out in time");
                }
            }
        }
    }

    /// The periodic check of event subjects ([`super::FanOut::check_streams_every`]): finds
    /// those among `topics` whose newest stored event is beyond what this instance delivered,
    /// and has each that stood still meanwhile read what it missed, as after a reconnect. An
    /// event lost on its way here with none after it would otherwise wait for the topic's next
    /// event. A topic whose order moved during [`ON_ITS_WAY`] is left alone: its events are
    /// arriving live (a busy topic is nearly always an event or two behind the stream for a
    /// moment, and one whose gateway lags further is read back by nothing but its next gap).
    /// Returns how many topics were read back.
    pub(super) async fn check(&self, topics: Vec<Arc<Topic>>) -> u64 {
        let behind: Vec<(Arc<Topic>, u64, u64)> = futures::stream::iter(topics)
            .map(|topic| async move {
                let newest = self.inner.history.latest(&topic.subject).await.ok()??;
                let head = topic.log.lock().fill_from()?;
                let acted = topic.checked_up_to.load(Ordering::Relaxed);
                (newest > head && newest != acted).then_some((topic, head, newest))
            })
            .buffer_unordered(super::snapshots::CHECK_READS_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await;
        if behind.is_empty() {
            return 0;
        }
        tokio::time::sleep(ON_ITS_WAY).await;
        let mut read_back = 0;
        for (topic, head, newest) in behind {
            let still = topic.log.lock().fill_from() == Some(head);
            if still && !topic.is_stopped() {
                topic.checked_up_to.store(newest, Ordering::Relaxed);
                topic.resync.notify_one();
                read_back += 1;
            }
        }
        read_back
    }

    /// An event subject's dispatch: delivers each event once, in `seq` order, reading what is
    /// missing from the stream first; after a NATS reconnect, reads what may have been
    /// dropped.
    pub(super) async fn dispatch(self, topic: Weak<Topic>, subscriber: async_nats::Subscriber) {
        let metrics = self.inner.metrics.clone();
        let mut incoming = Incoming::new(subscriber, self.inner.limits.replay_room());
        loop {
            let message = {
                let Some(t) = topic.upgrade() else { break };
                tokio::select! {
                    message = incoming.next() => message,
                    () = t.resync.notified() => {
                        self.fill(&t, &mut incoming)
                            .instrument(tracing::debug_span!("fill", subject = %t.subject))
                            .await;
                        continue;
                    }
                }
            };
            let Some(message) = message else { break };
            let Some(topic) = topic.upgrade() else { break };
            let span = topic.span(message.headers.as_ref());
            let Some(frame) = incoming::frame_of(&topic, message, &metrics) else {
                continue;
            };
            match span.in_scope(|| topic.deliver_event(&frame, Push::Live, &metrics)) {
                Order::Next => {}
                Order::Duplicate => {
                    metrics.events_duplicate.inc();
                }
                Order::Gap { .. } => {
                    incoming.hold(&topic, frame, Source::Live, &metrics);
                    self.fill(&topic, &mut incoming).instrument(span).await;
                }
            }
        }
    }

    /// Reads the events after the topic's head from the stream and delivers them with the live
    /// ones held beyond the gap that called for it, if any ([`Incoming`]), taking the live
    /// events that arrive meanwhile. What neither brings is announced with a reset before the
    /// events that follow.
    ///
    /// A gap lasts until the missing event comes, from the stream or live; it is read again
    /// 50 ms, then 100 ms later (an event sent live may be stored a moment later) before it is
    /// announced. Longer, while there is reason to think the missing event is still on its way
    /// (never beyond [`CONFIRM_WAIT`] in all):
    /// - while the stream elects a leader, a read that ended on a replica's word or that
    ///   nothing answered proves nothing missing, nor that nothing is: it is made again every
    ///   [`CONFIRM_PAUSE`], with or without a gap;
    /// - for [`RESEND_WAIT`] after that, or after this instance's NATS link came back, the
    ///   relay may still be sending again what JetStream did not acknowledge.
    async fn fill(&self, topic: &Arc<Topic>, incoming: &mut Incoming) {
        let metrics = &self.inner.metrics;
        let (limit, max_bytes) = (
            self.inner.limits.replay_max,
            self.inner.limits.replay_max_bytes,
        );
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            // A catch-up may have moved the head meanwhile: what it delivered is let go.
            incoming.deliver_ready(topic, metrics);
            let Some(head) = topic.log.lock().fill_from() else {
                // Nothing known of the stream and nothing delivered here, not even just above
                // (with no head, the oldest held event starts the order): nothing is held, and
                // nothing tells where a read would start (the first read failed, or a gap was
                // given up on and nothing came since): the place is read again, and the
                // subscribers told then if what this read was for may be lost.
                self.retry_floor(topic.clone());
                return;
            };
            let read = self
                .inner
                .history
                .read_after(&topic.subject, topic.id, head, limit, max_bytes)
                .await;
            let within = started.elapsed() < CONFIRM_WAIT;
            let unsettled = history::unsettled(&read);
            // What a replica's word cannot show is unavailable, not lost.
            let missing = if unsettled {
                ResetReason::Unavailable
            } else {
                ResetReason::Gap
            };
            let settling =
                unsettled && within && self.inner.history.unsettled_for_less_than(CONFIRM_WAIT);
            if !settling {
                attempt += 1;
            }
            match read {
                Ok(stored) => {
                    // From a head that only says the stream held nothing, what the stream no
                    // longer holds below the first event read went before anyone here
                    // subscribed. Not what it still holds there but the read passed over for
                    // the replay limit (event count or bytes): stored after that first read,
                    // it is owed, and skipping it takes a `limit` reset. Nor the live events
                    // held beyond the gap: they came after that read, and if the stream lacks
                    // them (stored later, a first store lost with a leader change), they are
                    // still owed, and so is the order from them.
                    let retained = stored
                        .missing_before
                        .map(|first| incoming.first().map_or(first, |held| first.min(held)));
                    if let Some(first) = retained {
                        // As `Topic::reset_all`, under the lock that found the head no fresh
                        // start.
                        let mut log = topic.log.lock();
                        if !log.start_at_retained(first, stored.oldest_stored) {
                            let reason = if stored.limited {
                                ResetReason::Limit
                            } else {
                                ResetReason::Expired
                            };
                            let room = incoming.room();
                            topic.reset_and_restart_locked(
                                &mut log,
                                Some(first),
                                reason,
                                room,
                                metrics,
                            );
                        }
                    }
                    for frame in stored.frames {
                        incoming.hold(topic, frame, Source::Stream, metrics);
                    }
                    incoming.deliver_ready(topic, metrics);
                }
                Err(_) if settling => {}
                Err(e) => {
                    tracing::warn!(subject = %topic.subject, error = %e, "cannot read missed events");
                    let room = incoming.room();
                    topic.reset_all(incoming.first(), ResetReason::Unavailable, room, metrics);
                    incoming.deliver_across_gaps(topic, metrics, ResetReason::Unavailable);
                    return;
                }
            }
            let gapped = incoming.gapped();
            if !gapped && !settling {
                return;
            }
            if settling && gapped {
                incoming.wait(topic, metrics, CONFIRM_PAUSE).await;
            } else if settling || (within && self.disturbed_lately()) {
                // A gap the relay may still fill, or a read on a replica's word without a gap:
                // read again every second (every topic of the gateway may be doing so at once).
                incoming.wait(topic, metrics, RESEND_PAUSE).await;
            } else if attempt < SPLICE_ATTEMPTS {
                incoming.wait(topic, metrics, splice_pause(attempt)).await;
            } else {
                incoming.deliver_across_gaps(topic, metrics, missing);
                return;
            }
            if !settling && !incoming.gapped() {
                return; // filled live meanwhile
            }
        }
    }

    /// Notes that this instance's NATS link came back (see [`Events::fill`]).
    pub(super) fn reconnected(&self) {
        *self.inner.reconnected.lock() = Some(Instant::now());
    }

    /// Whether the events stream's reads were unsettled, or this instance's NATS link came
    /// back, less than [`RESEND_WAIT`] ago.
    fn disturbed_lately(&self) -> bool {
        let lately = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < RESEND_WAIT);
        lately(*self.inner.reconnected.lock()) || lately(self.inner.history.last_unsettled())
    }
}

/// The wait before reading the stream again after attempt `attempt` found an event that was
/// sent live but not stored yet: 50 ms, then 100 ms.
fn splice_pause(attempt: usize) -> Duration {
    Duration::from_millis(50 * attempt as u64)
}
