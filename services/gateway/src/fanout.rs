//! Fan-out: one NATS subscription per subject in use on this instance, shared by every local
//! client subscribed to it, each message turned into a frame once and pushed to every
//! subscriber's queue.
//!
//! The first local subscriber of a subject creates its NATS subscription; the last one leaving
//! removes it. A new subscriber of a snapshot subject gets its current value at once: the newest
//! frame seen on this instance, or the last message retained in the JetStream `PULSE_STATE`
//! stream. An event subject delivers every event once and in `seq` order, filling a gap from
//! the `PULSE_EVENTS` stream before going on, and brings a subscriber that gives `since` up to
//! date from its recent events or from the stream (see [`crate::replay`]).
//!
//! Locks here are held only for map updates and queue pushes, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_nats::jetstream;
use axum::extract::ws::Utf8Bytes;
use futures::StreamExt as _;
use parking_lot::{Mutex, RwLock};
use pulse_proto::subject::STATE_STREAM;
use pulse_proto::{ResetReason, Subject};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::Instrument as _;

use crate::frame::{Frame, seq_of};
use crate::history::History;
use crate::ids::{ConnId, TopicId};
use crate::metrics::Metrics;
use crate::queue::{ClientQueue, Pushed, supersedes};
use crate::replay::{self, EventLog, Item, Order};

/// How often a catching-up client's history is read again while a gap remains (an event
/// delivered live may reach the stream a moment later).
const SPLICE_ATTEMPTS: usize = 3;
/// How long a read of a current value may take before JetStream counts as unavailable.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a new event subject's subscribe waits for its newest stored event before it goes
/// on without (the read then finishes beside the connection).
const HEAD_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// A subject in use on this instance and its local subscribers.
pub struct Topic {
    pub id: TopicId,
    pub subject: Subject,
    snapshot: bool,
    subscribers: RwLock<HashMap<ConnId, Arc<ClientQueue>>>,
    latest: Mutex<Option<Frame>>,
    started: tokio::sync::OnceCell<()>,
    /// The retained value is read from JetStream once per topic, however many clients
    /// subscribe at the same moment.
    retained: tokio::sync::OnceCell<()>,
    dispatch: Mutex<Option<AbortHandle>>,
    removed: AtomicBool,
    /// Whether this topic is counted in the `nats_subscriptions` gauge.
    counted: AtomicBool,
    /// Event subjects: order, recent events and catching-up clients.
    log: Mutex<EventLog>,
    /// Event subjects: wakes the dispatch task to read what NATS may have dropped.
    resync: Notify,
}

impl Topic {
    /// Keeps `frame` as the current value if it is newer than the one held.
    fn remember(&self, frame: &Frame) -> bool {
        let mut latest = self.latest.lock();
        match &*latest {
            Some(held) if !supersedes(frame, held) => false,
            _ => {
                *latest = Some(frame.clone());
                true
            }
        }
    }

    /// Pushes an event to every local subscriber (holding it for those catching up) if it is
    /// the next in order; returns where it stood.
    fn deliver_event(&self, frame: &Frame, metrics: &Metrics) -> Order {
        let mut log = self.log.lock();
        self.deliver_locked(&mut log, frame, None, metrics)
    }

    /// [`Topic::deliver_event`] with the log already locked, skipping `except`.
    fn deliver_locked(
        &self,
        log: &mut EventLog,
        frame: &Frame,
        except: Option<ConnId>,
        metrics: &Metrics,
    ) -> Order {
        let order = log.order(frame.seq);
        if order != Order::Next {
            return order;
        }
        log.advance(frame);
        let subscribers = self.subscribers.read();
        if log.catching_up.is_empty() && except.is_none() {
            // The common case: nobody is catching up, so no per-subscriber lookup.
            for queue in subscribers.values() {
                queue.push_event(frame.clone());
            }
            metrics.events_delivered.inc();
            return order;
        }
        for (conn, queue) in subscribers.iter() {
            if Some(*conn) == except {
                continue;
            }
            match log.catching_up.get_mut(conn) {
                Some(held) if held.len() < queue.event_cap() => held.push(frame.clone()),
                Some(_) => queue.overflow_now(),
                None => {
                    queue.push_event(frame.clone());
                }
            }
        }
        metrics.events_delivered.inc();
        order
    }

    /// Tells every subscriber not catching up that events were missed.
    fn reset_all(&self, oldest: Option<u64>, reason: ResetReason, metrics: &Metrics) {
        let Subject::Events(_, name) = &self.subject else {
            return;
        };
        let frame = replay::reset_frame(self.id, name, oldest, reason);
        let log = self.log.lock();
        let subscribers = self.subscribers.read();
        for (conn, queue) in subscribers.iter() {
            if !log.catching_up.contains_key(conn) {
                queue.push_event(frame.clone());
                metrics.event_resets.inc();
            }
        }
    }

    /// Pushes `frame` to every local subscriber; returns how many got it.
    fn deliver(&self, frame: &Frame, metrics: &Metrics) -> usize {
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

    fn stop(&self, metrics: &Metrics) {
        self.removed.store(true, Ordering::SeqCst);
        if let Some(handle) = self.dispatch.lock().take() {
            handle.abort();
        }
        if self.counted.swap(false, Ordering::SeqCst) {
            metrics.nats_subscriptions.dec();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(String),
    #[error("the tenant already has {0} subjects on this gateway")]
    TenantSubjects(usize),
}

/// The subjects in use on this instance, and how many each tenant has.
#[derive(Default)]
struct Topics {
    by_subject: HashMap<Subject, Arc<Topic>>,
    per_tenant: HashMap<pulse_proto::TenantId, usize>,
}

/// A subscription in place.
pub struct Subscribed {
    pub topic: Arc<Topic>,
    /// Event subjects subscribed without `since`: the newest `seq` delivered here, when known.
    pub seq: Option<u64>,
}

/// How event subjects are served.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Recent events kept per event subject for clients resuming with `since`.
    pub cache: usize,
    /// Most events replayed to one resuming client; more missed ones end in a reset.
    pub replay_max: usize,
    /// Most distinct subjects one tenant may have in use on this instance.
    pub subjects_per_tenant: usize,
}

#[derive(Clone)]
pub struct FanOut {
    inner: Arc<Inner>,
}

struct Inner {
    nats: async_nats::Client,
    js: jetstream::Context,
    state_stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
    topics: Mutex<Topics>,
    next_topic: AtomicU64,
    metrics: Metrics,
    history: History,
    limits: EventLimits,
}

impl FanOut {
    pub fn new(nats: async_nats::Client, metrics: Metrics, limits: EventLimits) -> Self {
        let js = jetstream::new(nats.clone());
        Self {
            inner: Arc::new(Inner {
                nats,
                history: History::new(js.clone()),
                js,
                state_stream: tokio::sync::OnceCell::new(),
                topics: Mutex::new(Topics::default()),
                next_topic: AtomicU64::new(1),
                metrics,
                limits,
            }),
        }
    }

    /// Whether `subject` is in use on this instance (so it passed its checks already).
    pub fn has_subject(&self, subject: &Subject) -> bool {
        self.inner.topics.lock().by_subject.contains_key(subject)
    }

    /// Number of subjects with a NATS subscription on this instance.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.lock().by_subject.len()
    }

    /// Adds `queue` as a subscriber of `subject`. A snapshot subject queues its current value;
    /// an event subject given `since` queues every event after it, then the live ones.
    pub async fn subscribe(
        &self,
        conn: ConnId,
        queue: &Arc<ClientQueue>,
        subject: &Subject,
        since: Option<u64>,
    ) -> Result<Subscribed, FanOutError> {
        let (topic, catching_up) = {
            let mut topics = self.inner.topics.lock();
            let tenant = subject.tenant();
            let held = topics.per_tenant.get(tenant).copied().unwrap_or(0);
            if !topics.by_subject.contains_key(subject) {
                if held >= self.inner.limits.subjects_per_tenant {
                    return Err(FanOutError::TenantSubjects(held));
                }
                *topics.per_tenant.entry(tenant.clone()).or_insert(0) += 1;
            }
            let topic = topics
                .by_subject
                .entry(subject.clone())
                .or_insert_with(|| {
                    let snapshot = subject.is_snapshot();
                    Arc::new(Topic {
                        id: self.inner.next_topic.fetch_add(1, Ordering::Relaxed),
                        subject: subject.clone(),
                        snapshot,
                        subscribers: RwLock::new(HashMap::new()),
                        latest: Mutex::new(None),
                        started: tokio::sync::OnceCell::new(),
                        retained: tokio::sync::OnceCell::new(),
                        dispatch: Mutex::new(None),
                        removed: AtomicBool::new(false),
                        counted: AtomicBool::new(false),
                        log: Mutex::new(EventLog::new(if snapshot {
                            0
                        } else {
                            self.inner.limits.cache
                        })),
                        resync: Notify::new(),
                    })
                })
                .clone();
            // Registering and deciding how to catch up happen under the log's lock, so no
            // event is delivered in between.
            let mut log = topic.log.lock();
            let catching_up = match since {
                Some(since) if !topic.snapshot => {
                    match topic
                        .started
                        .initialized()
                        .then(|| log.from_memory(since))
                        .flatten()
                    {
                        Some(frames) => {
                            self.inner
                                .metrics
                                .events_replayed
                                .inc_by(frames.len() as u64);
                            queue.push_replay(frames);
                            false
                        }
                        None => {
                            log.catching_up.insert(conn, Vec::new());
                            true
                        }
                    }
                }
                _ => false,
            };
            topic.subscribers.write().insert(conn, queue.clone());
            drop(log);
            (topic, catching_up)
        };
        if let Err(e) = topic
            .started
            .get_or_try_init(|| self.start_dispatch(&topic))
            .await
        {
            self.unsubscribe(conn, &topic);
            return Err(e);
        }
        let mut seq = None;
        if topic.snapshot {
            self.queue_current(&topic, queue).await;
        } else if let Some(since) = since.filter(|_| catching_up) {
            tokio::spawn(
                self.clone()
                    .catch_up(topic.clone(), conn, queue.clone(), since),
            );
        } else if since.is_none() {
            seq = topic.log.lock().head;
        }
        Ok(Subscribed { topic, seq })
    }

    /// Brings a catching-up client from `since` to the live events: reads the stream, then
    /// joins it with the recent and held frames under the log's lock.
    async fn catch_up(self, topic: Arc<Topic>, conn: ConnId, queue: Arc<ClientQueue>, since: u64) {
        let metrics = &self.inner.metrics;
        let Subject::Events(_, name) = &topic.subject else {
            return;
        };
        let started = Instant::now();
        for attempt in 1..=SPLICE_ATTEMPTS {
            let read = self
                .inner
                .history
                .read_after(
                    &topic.subject,
                    topic.id,
                    since,
                    self.inner.limits.replay_max,
                )
                .await;
            let mut log = topic.log.lock();
            let Some(held) = log.catching_up.get(&conn) else {
                return; // unsubscribed meanwhile
            };
            let items = match &read {
                Ok(stored) => {
                    let memory = log.recent().chain(held.iter());
                    match replay::splice(since, stored, memory, attempt == SPLICE_ATTEMPTS) {
                        Some(items) => items,
                        None => continue,
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
            log.catching_up.remove(&conn);
            let mut replayed = 0u64;
            let mut ahead = Vec::new();
            let mut frames = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Item::Event(frame) => {
                        replayed += 1;
                        if log.head.is_some_and(|head| frame.seq > head) {
                            ahead.push(frame.clone());
                        }
                        frames.push(frame);
                    }
                    Item::Reset { oldest, reason } => {
                        metrics.event_resets.inc();
                        frames.push(replay::reset_frame(topic.id, name, oldest, reason));
                    }
                }
            }
            queue.push_replay(frames);
            // Events the stream holds but this instance had not delivered yet are the topic's
            // next ones for every other subscriber too; their live copies become duplicates.
            for frame in &ahead {
                if topic.deliver_locked(&mut log, frame, Some(conn), metrics) != Order::Next {
                    break;
                }
            }
            if let (None, Ok(stored)) = (log.head, &read)
                && let Some(last) = stored.frames.last()
            {
                log.learn_head(last.seq);
            }
            drop(log);
            metrics.events_replayed.inc_by(replayed);
            tracing::debug!(
                subject = %topic.subject, since, replayed, took = ?started.elapsed(),
                "client caught up"
            );
            return;
        }
    }

    /// Removes `conn` from `topic`; the last subscriber leaving ends the NATS subscription.
    pub fn unsubscribe(&self, conn: ConnId, topic: &Arc<Topic>) {
        let mut topics = self.inner.topics.lock();
        topic.log.lock().catching_up.remove(&conn);
        let empty = {
            let mut subscribers = topic.subscribers.write();
            subscribers.remove(&conn);
            subscribers.is_empty()
        };
        if empty {
            if topics
                .by_subject
                .get(&topic.subject)
                .is_some_and(|current| Arc::ptr_eq(current, topic))
            {
                topics.by_subject.remove(&topic.subject);
                let tenant = topic.subject.tenant();
                if let Some(n) = topics.per_tenant.get_mut(tenant) {
                    *n -= 1;
                    if *n == 0 {
                        topics.per_tenant.remove(tenant);
                    }
                }
            }
            topic.stop(&self.inner.metrics);
        }
    }

    async fn start_dispatch(&self, topic: &Arc<Topic>) -> Result<(), FanOutError> {
        let subscriber = self
            .inner
            .nats
            .subscribe(topic.subject.to_string())
            .await
            .map_err(|e| FanOutError::Subscribe(e.to_string()))?;
        let task = if topic.snapshot {
            tokio::spawn(dispatch(
                Arc::downgrade(topic),
                subscriber,
                self.inner.metrics.clone(),
            ))
        } else {
            tokio::spawn(dispatch_events(
                Arc::downgrade(topic),
                subscriber,
                self.clone(),
            ))
        };
        *topic.dispatch.lock() = Some(task.abort_handle());
        self.server_barrier(topic).await;
        if !topic.counted.swap(true, Ordering::SeqCst) {
            self.inner.metrics.nats_subscriptions.inc();
        }
        if topic.removed.load(Ordering::SeqCst) {
            // The last subscriber left while we were subscribing.
            topic.stop(&self.inner.metrics);
        }
        Ok(())
    }

    /// Waits until the NATS server has handled this connection's earlier commands, so that a
    /// client told "subscribed" gets every message published after that reply. A SUB is only
    /// written to the socket by `subscribe`; without this, a message published at once from
    /// another connection could reach the server first and be missed.
    ///
    /// The server handles a connection's commands in order, so any reply to a request sent
    /// after the SUB proves it is in place. Snapshot subjects get that from the read of their
    /// retained value, which follows; event subjects make the same read and ignore its answer
    /// (nothing is retained for them). It is a request the gateway's NATS permissions allow.
    ///
    /// A JetStream that answers slowly holds the subscribe at most [`HEAD_WAIT`]: then a core
    /// NATS round trip proves the SUB is in place, and the head is learned when the read
    /// answers (until then the subscriber gets no `seq` in `subscribed`, as the protocol
    /// allows, and the first live event starts this instance's order).
    async fn server_barrier(&self, topic: &Arc<Topic>) {
        // Disconnected: the SUB is sent again on reconnect; there is nothing to wait for.
        if !topic.snapshot
            && self.inner.nats.connection_state() == async_nats::connection::State::Connected
        {
            // The newest stored event is also where this instance's order starts.
            let read = self.inner.history.latest(&topic.subject, topic.id);
            match tokio::time::timeout(HEAD_WAIT, read).await {
                Ok(result) => learn_head(topic, result),
                Err(_) => {
                    if tokio::time::timeout(READ_TIMEOUT, self.inner.nats.flush())
                        .await
                        .is_err()
                    {
                        tracing::debug!(subject = %topic.subject, "no NATS round trip in time");
                    }
                    let fanout = self.clone();
                    let topic = topic.clone();
                    tokio::spawn(async move {
                        let result = fanout.inner.history.latest(&topic.subject, topic.id).await;
                        learn_head(&topic, result);
                    });
                }
            }
        }
    }

    /// Queues the subject's current value for one new subscriber. When JetStream cannot be
    /// read, the subscription stands and the value follows once it can (see
    /// [`FanOut::retry_retained`]).
    ///
    /// The read runs beside the connection, never in its way: a slow JetStream delays the
    /// value, not the `subscribed` reply nor the connection's other requests. Whoever subscribes
    /// while it runs is already a subscriber when it hands the value out.
    async fn queue_current(&self, topic: &Arc<Topic>, queue: &ClientQueue) {
        if topic.latest.lock().is_none() && topic.retained.set(()).is_ok() {
            let fanout = self.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                match fanout.fetch_retained(&topic).await {
                    Ok(Some(frame)) => push_current(&topic, &frame),
                    Ok(None) => {}
                    Err(()) => fanout.retry_retained(topic),
                }
            });
        }
        let current = topic.latest.lock().clone();
        if let Some(frame) = current {
            queue.push_snapshot(frame);
        }
    }

    /// Reads the retained value again, with backoff, until JetStream answers or the topic is
    /// gone, and hands it to every subscriber.
    fn retry_retained(&self, topic: Arc<Topic>) {
        let fanout = self.clone();
        tokio::spawn(async move {
            let mut backoff = pulse_common::backoff::Backoff::new(
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(5),
            );
            while !topic.removed.load(Ordering::SeqCst) {
                tokio::time::sleep(backoff.next_delay()).await;
                match fanout.fetch_retained(&topic).await {
                    Ok(Some(frame)) => {
                        tracing::info!(subject = %topic.subject, "current value read after all");
                        push_current(&topic, &frame);
                        return;
                    }
                    Ok(None) => return,
                    Err(()) => {}
                }
            }
        });
    }

    /// The message retained in `PULSE_STATE` for `subject`: `Ok(None)` when there is none,
    /// `Err` when JetStream did not answer in time. Whatever the answer, the call is a round
    /// trip through the NATS server.
    async fn read_retained(
        &self,
        subject: &Subject,
    ) -> Result<Option<jetstream::message::StreamMessage>, ()> {
        let stream = self
            .inner
            .state_stream
            .get_or_try_init(|| async {
                match tokio::time::timeout(READ_TIMEOUT, self.inner.js.get_stream(STATE_STREAM))
                    .await
                {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot open the state stream"))?;
        let read = stream.direct_get_last_for_subject(subject.to_string());
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(%subject, error = %e, "cannot read the current value");
                Err(())
            }
            Err(_) => {
                tracing::warn!(%subject, "reading the current value timed out");
                Err(())
            }
        }
    }

    /// Reads the retained last message of a snapshot subject from JetStream and remembers it;
    /// returns the topic's newest value.
    async fn fetch_retained(&self, topic: &Topic) -> Result<Option<Frame>, ()> {
        let Some(message) = self.read_retained(&topic.subject).await? else {
            return Ok(None);
        };
        let Ok(text) = Utf8Bytes::try_from(message.payload) else {
            return Ok(None);
        };
        let frame = Frame {
            topic: topic.id,
            seq: seq_of(Some(&message.headers)),
            snapshot: true,
            text,
            received: Instant::now(),
        };
        topic.remember(&frame);
        Ok(topic.latest.lock().clone())
    }

    /// After NATS reconnects: messages may have been missed, so every snapshot subject's
    /// retained value is read again and pushed to its subscribers where it is newer.
    pub async fn resync(&self) {
        let topics: Vec<Arc<Topic>> = self
            .inner
            .topics
            .lock()
            .by_subject
            .values()
            .cloned()
            .collect();
        for topic in topics.iter().filter(|t| !t.snapshot) {
            topic.resync.notify_one();
        }
        for topic in topics.into_iter().filter(|t| t.snapshot) {
            let before = topic.latest.lock().as_ref().map(|f| f.seq);
            match self.fetch_retained(&topic).await {
                Ok(Some(frame)) if Some(frame.seq) != before => push_current(&topic, &frame),
                Ok(_) => {}
                Err(()) => self.retry_retained(topic),
            }
        }
    }
}

/// Records where an event subject's order starts, from the read of its newest stored event.
fn learn_head(topic: &Topic, result: Result<Option<Frame>, crate::history::HistoryError>) {
    match result {
        Ok(Some(frame)) => topic.log.lock().learn_head(frame.seq),
        Ok(None) => topic.log.lock().learn_head(0),
        Err(e) => tracing::debug!(subject = %topic.subject, error = %e, "no event history"),
    }
}

/// Hands a snapshot topic's current value to every subscriber (each queue keeps the newest).
fn push_current(topic: &Topic, frame: &Frame) {
    let subscribers = topic.subscribers.read();
    for queue in subscribers.values() {
        queue.push_snapshot(frame.clone());
    }
}

/// A message that carries a trace context gets a span continuing that trace, so a trace runs
/// from the database change through the poller to the fan-out. Untraced messages (the common
/// case) cost no span at the default level.
fn fanout_span(topic: &Topic, headers: Option<&async_nats::HeaderMap>) -> tracing::Span {
    let traced = headers.is_some_and(|h| h.get(pulse_proto::headers::TRACEPARENT).is_some());
    if traced {
        let span = tracing::info_span!(
            "fanout",
            subject = %topic.subject,
            recipients = topic.subscribers.read().len()
        );
        pulse_common::trace_headers::continue_from(&span, headers);
        span
    } else {
        tracing::trace_span!("fanout", subject = %topic.subject)
    }
}

async fn dispatch(topic: Weak<Topic>, mut subscriber: async_nats::Subscriber, metrics: Metrics) {
    while let Some(message) = subscriber.next().await {
        let Some(topic) = topic.upgrade() else { break };
        let received = Instant::now();
        metrics.messages_in.inc();
        let span = fanout_span(&topic, message.headers.as_ref());
        let _entered = span.enter();
        let seq = seq_of(message.headers.as_ref());
        let Ok(text) = Utf8Bytes::try_from(message.payload) else {
            tracing::warn!(subject = %topic.subject, "dropping a message that is not UTF-8");
            continue;
        };
        let frame = Frame {
            topic: topic.id,
            seq,
            snapshot: topic.snapshot,
            text,
            received,
        };
        topic.deliver(&frame, &metrics);
    }
}

/// An event subject's dispatch: delivers each event once, in `seq` order, reading what is
/// missing from the stream first; after a NATS reconnect, reads what may have been dropped.
async fn dispatch_events(
    topic: Weak<Topic>,
    mut subscriber: async_nats::Subscriber,
    fanout: FanOut,
) {
    let metrics = fanout.inner.metrics.clone();
    loop {
        let message = {
            let Some(t) = topic.upgrade() else { break };
            tokio::select! {
                message = subscriber.next() => message,
                () = t.resync.notified() => {
                    fill(&fanout, &t, None)
                        .instrument(tracing::debug_span!("fill", subject = %t.subject))
                        .await;
                    continue;
                }
            }
        };
        let Some(message) = message else { break };
        let Some(topic) = topic.upgrade() else { break };
        metrics.messages_in.inc();
        let span = fanout_span(&topic, message.headers.as_ref());
        let Ok(text) = Utf8Bytes::try_from(message.payload) else {
            tracing::warn!(subject = %topic.subject, "dropping a message that is not UTF-8");
            continue;
        };
        let frame = Frame {
            topic: topic.id,
            seq: seq_of(message.headers.as_ref()),
            snapshot: false,
            text,
            received: Instant::now(),
        };
        match span.in_scope(|| topic.deliver_event(&frame, &metrics)) {
            Order::Next => {}
            Order::Duplicate => {
                metrics.events_duplicate.inc();
            }
            Order::Gap { .. } => fill(&fanout, &topic, Some(frame)).instrument(span).await,
        }
    }
}

/// Reads the events after the topic's head from the stream and delivers them, then `pending`
/// (the live event that revealed the gap). What cannot be read back is announced with a reset
/// before the events that follow.
async fn fill(fanout: &FanOut, topic: &Arc<Topic>, pending: Option<Frame>) {
    let metrics = &fanout.inner.metrics;
    let limit = fanout.inner.limits.replay_max;
    for attempt in 1..=SPLICE_ATTEMPTS {
        let Some(head) = topic.log.lock().head else {
            break;
        };
        match fanout
            .inner
            .history
            .read_after(&topic.subject, topic.id, head, limit)
            .await
        {
            Ok(stored) => {
                if stored.missing_before.is_some() {
                    let reason = if stored.limited {
                        ResetReason::Limit
                    } else {
                        ResetReason::Expired
                    };
                    topic.reset_all(stored.missing_before, reason, metrics);
                    topic.log.lock().forget_head();
                }
                let mut filled = 0;
                for frame in &stored.frames {
                    match topic.deliver_event(frame, metrics) {
                        Order::Next => filled += 1,
                        Order::Duplicate => {}
                        Order::Gap { .. } => break,
                    }
                }
                metrics.events_filled.inc_by(filled);
                let Some(frame) = &pending else { return };
                let order = topic.log.lock().order(frame.seq);
                match order {
                    Order::Next | Order::Duplicate => break,
                    // An event sent live before it was stored: read again shortly.
                    Order::Gap { .. } if attempt < SPLICE_ATTEMPTS => {
                        tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64))
                            .await;
                    }
                    Order::Gap { .. } => {
                        topic.reset_all(Some(frame.seq), ResetReason::Gap, metrics);
                        topic.log.lock().forget_head();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(subject = %topic.subject, error = %e, "cannot read missed events");
                topic.reset_all(
                    pending.as_ref().map(|f| f.seq),
                    ResetReason::Unavailable,
                    metrics,
                );
                topic.log.lock().forget_head();
                break;
            }
        }
    }
    if let Some(frame) = &pending
        && topic.deliver_event(frame, metrics) == Order::Duplicate
    {
        metrics.events_duplicate.inc();
    }
}
