//! Fan-out: one NATS subscription per subject in use on this instance, shared by every local
//! client subscribed to it, each message turned into a frame once and pushed to every
//! subscriber's queue.
//!
//! The first local subscriber of a subject creates its NATS subscription; the last one leaving
//! removes it. Here: the subjects in use, subscribing and unsubscribing, and the periodic check
//! of the subjects in use against the streams ([`FanOut::check_streams_every`]). Beside it:
//! - [`topic`]: one subject's subscribers, lifecycle and delivery;
//! - [`snapshots`]: a snapshot subject's current value, pushed to each new subscriber;
//! - [`events`]: an event subject's order, gap filling and resuming from `since`;
//! - [`looks`]: subjects read again a moment and a while after their read.
//!
//! The submodules do not know this one: what they share is handed to them.
//!
//! Locks here are held only for map updates and queue pushes, never across an `.await`.

mod events;
mod incoming;
mod looks;
mod snapshots;
mod topic;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use pulse_proto::Subject;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use self::events::EventLimits;
use self::events::Events;
use self::looks::Looks;
use self::snapshots::CurrentValues;
pub use self::topic::Topic;
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::queue::ClientQueue;
use crate::replay::CacheBudget;

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(String),
    /// NATS is disconnected: a subscription started now could not learn where its subject
    /// stands, and what is published until the link is back would be missed unannounced.
    #[error("NATS is disconnected")]
    Disconnected,
    #[error("the tenant already has {0} subjects on this gateway")]
    TenantSubjects(usize),
    #[error("this user already brought {0} subjects into use on this gateway")]
    UserSubjects(usize),
}

/// Least time between two reads of everything after NATS dropped messages: drops come in
/// bursts, and each read asks JetStream about every subject in use.
const DROPPED_READS_APART: std::time::Duration = std::time::Duration::from_secs(1);
/// The most time between two such reads while drops go on.
const DROPPED_READS_APART_MOST: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest a NATS subscribe may take before the subscriber is told `unavailable`.
const SUBSCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a new subject's subscribe waits for the read that proves its SUB is in place on
/// the server (its current value, or its newest stored event) before it goes on without (the
/// read then finishes beside the connection).
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Awaits `read` for at most [`BARRIER_WAIT`] and gives its answer. A slower read is not
/// asked again: it finishes on a task of its own, which hands its answer to `late`, so a
/// JetStream already slow gets no second request.
async fn within_barrier<T: Send + 'static>(
    read: impl Future<Output = T> + Send + 'static,
    late: impl FnOnce(T) + Send + 'static,
) -> Option<T> {
    let mut read = Box::pin(read);
    match tokio::time::timeout(BARRIER_WAIT, &mut read).await {
        Ok(answer) => Some(answer),
        Err(_) => {
            tokio::spawn(async move { late(read.await) });
            None
        }
    }
}

/// The subjects in use on this instance, and how many each tenant has.
#[derive(Default)]
struct Topics {
    by_subject: HashMap<Subject, Arc<Topic>>,
    per_tenant: HashMap<pulse_proto::TenantId, usize>,
    /// Who brought each subject into use (a token's `sub`; none for a token without one).
    opened_by: HashMap<Subject, String>,
    /// Subjects in use per user who brought them into use.
    per_user: HashMap<(pulse_proto::TenantId, String), usize>,
}

impl Topics {
    /// Counts `subject`, new on this instance, against its tenant's and `user`'s budgets, or
    /// says which is spent.
    fn open(
        &mut self,
        subject: &Subject,
        user: &str,
        limits: &EventLimits,
    ) -> Result<(), FanOutError> {
        let tenant = subject.tenant();
        let held = self.per_tenant.get(tenant).copied().unwrap_or(0);
        if held >= limits.subjects_per_tenant {
            return Err(FanOutError::TenantSubjects(held));
        }
        if !user.is_empty() {
            let key = (tenant.clone(), user.to_owned());
            let opened = self.per_user.get(&key).copied().unwrap_or(0);
            if opened >= limits.subjects_per_user {
                return Err(FanOutError::UserSubjects(opened));
            }
            self.per_user.insert(key, opened + 1);
            self.opened_by.insert(subject.clone(), user.to_owned());
        }
        *self.per_tenant.entry(tenant.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// Takes `subject`, no longer in use, off the budgets it was counted against.
    fn close(&mut self, subject: &Subject) {
        let tenant = subject.tenant();
        decrement(&mut self.per_tenant, tenant);
        if let Some(user) = self.opened_by.remove(subject) {
            decrement(&mut self.per_user, &(tenant.clone(), user));
        }
    }
}

/// Lowers `key`'s count by one, forgetting it at zero.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// A subscription in place.
pub struct Subscribed {
    pub topic: Arc<Topic>,
    /// Event subjects subscribed without `since`: the newest `seq` delivered here, when known.
    pub seq: Option<u64>,
}

#[derive(Clone)]
pub struct FanOut {
    inner: Arc<Inner>,
}

struct Inner {
    nats: async_nats::Client,
    topics: Mutex<Topics>,
    next_topic: AtomicU64,
    metrics: Metrics,
    limits: EventLimits,
    /// What the event subjects' recent frames may take together.
    cache_budget: Arc<CacheBudget>,
    current: CurrentValues,
    events: Events,
    /// Subjects to read again ([`looks`]).
    looks: Arc<Looks>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.looks.close();
    }
}

/// Why subjects are read again: messages may have been missed (a NATS reconnect, messages the
/// client dropped), or a second look after a read, where that is unlikely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    Maybe,
    Unlikely,
}

impl FanOut {
    pub fn new(nats: async_nats::Client, metrics: Metrics, limits: EventLimits) -> Self {
        let js = async_nats::jetstream::new(nats.clone());
        let looks = Arc::new(Looks::default());
        let fanout = Self {
            inner: Arc::new(Inner {
                current: CurrentValues::new(js, metrics.snapshot_retries.clone()),
                events: Events::new(nats.clone(), metrics.clone(), limits),
                nats,
                topics: Mutex::new(Topics::default()),
                next_topic: AtomicU64::new(1),
                cache_budget: CacheBudget::new(
                    limits.cache_bytes,
                    metrics.events_cache_bytes.clone(),
                ),
                metrics,
                limits,
                looks: looks.clone(),
            }),
        };
        let inner = Arc::downgrade(&fanout.inner);
        tokio::spawn(async move {
            while let Some(subjects) = looks.due().await {
                let Some(inner) = inner.upgrade() else { return };
                FanOut { inner }.look_again(&subjects).await;
            }
        });
        fanout
    }

    /// Whether `subject` is in use on this instance (so it passed its checks already).
    pub fn has_subject(&self, subject: &Subject) -> bool {
        self.inner.topics.lock().by_subject.contains_key(subject)
    }

    /// Number of subjects with a NATS subscription on this instance.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.lock().by_subject.len()
    }

    /// Adds `queue`, of a connection of `user` (a token's `sub`), as a subscriber of `subject`.
    /// A snapshot subject queues its current value; an event subject given `since` queues every
    /// event after it, then the live ones.
    pub async fn subscribe(
        &self,
        conn: ConnId,
        user: &str,
        queue: &Arc<ClientQueue>,
        subject: &Subject,
        since: Option<u64>,
    ) -> Result<Subscribed, FanOutError> {
        let (topic, catching_up) = {
            let mut topics = self.inner.topics.lock();
            if !topics.by_subject.contains_key(subject) {
                topics.open(subject, user, &self.inner.limits)?;
            }
            let topic = topics
                .by_subject
                .entry(subject.clone())
                .or_insert_with(|| {
                    Arc::new(Topic::new(
                        self.inner.next_topic.fetch_add(1, Ordering::Relaxed),
                        subject.clone(),
                        self.inner.limits.cache,
                        self.inner.cache_budget.clone(),
                        self.inner.limits.replay_max,
                    ))
                })
                .clone();
            // Registering and deciding how to catch up happen under the log's lock, so no
            // event is delivered in between.
            let mut log = topic.log.lock();
            let catching_up = match since {
                Some(since) if !topic.snapshot => self
                    .inner
                    .events
                    .resume(&topic, &mut log, conn, queue, since),
                None if !topic.snapshot => {
                    log.await_baseline(conn);
                    false
                }
                _ => false,
            };
            topic.subscribers.write().insert(conn, queue.clone());
            drop(log);
            (topic, catching_up)
        };
        if let Err(e) = self.start(&topic).await {
            self.unsubscribe(conn, &topic);
            return Err(e);
        }
        let mut seq = None;
        if topic.snapshot {
            self.inner.current.queue_current(&topic, queue);
        } else if let Some(since) = since.filter(|_| catching_up) {
            self.spawn_catch_up(&topic, conn, queue, since);
        } else if since.is_none() {
            seq = topic.log.lock().take_baseline(conn);
        }
        Ok(Subscribed { topic, seq })
    }

    /// Runs `conn`'s catch-up from `since` on a task of its own, which [`FanOut::unsubscribe`]
    /// aborts: a client that leaves (or subscribes and unsubscribes again and again) leaves no
    /// reads of the stream running.
    fn spawn_catch_up(
        &self,
        topic: &Arc<Topic>,
        conn: ConnId,
        queue: &Arc<ClientQueue>,
        since: u64,
    ) {
        let catch_up =
            self.inner
                .events
                .clone()
                .catch_up(topic.clone(), conn, queue.clone(), since);
        let counted = InProgress::count(&self.inner.metrics.event_catch_ups);
        // Spawned and recorded under one lock: the task finds itself recorded when it looks
        // (it splices only as the connection's current catch-up).
        let mut catch_ups = topic.catch_ups.lock();
        // In the subscribing connection's span, so that what the catch-up logs names it.
        let task = tokio::spawn(
            async move {
                let _counted = counted;
                catch_up.await;
            }
            .in_current_span(),
        );
        // Kept until the connection unsubscribes (aborting a finished task does nothing).
        if let Some(earlier) = catch_ups.insert(conn, task.abort_handle()) {
            earlier.abort();
        }
    }

    /// Removes `conn` from `topic`; the last subscriber leaving ends the NATS subscription.
    pub fn unsubscribe(&self, conn: ConnId, topic: &Arc<Topic>) {
        if let Some(catch_up) = topic.catch_ups.lock().remove(&conn) {
            catch_up.abort();
        }
        let mut topics = self.inner.topics.lock();
        {
            let mut log = topic.log.lock();
            if let Some(held) = log.catching_up.remove(&conn)
                && let Some(queue) = topic.subscribers.read().get(&conn)
            {
                queue.release_held(held.len());
            }
            log.take_baseline(conn);
        }
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
                topics.close(&topic.subject);
            }
            topic.stop(&self.inner.metrics);
        }
    }

    /// Makes sure the topic's NATS subscription is in place: the first subscriber starts it,
    /// those arriving meanwhile wait for that start, and after a failed one the next tries
    /// again.
    async fn start(&self, topic: &Arc<Topic>) -> Result<(), FanOutError> {
        if topic.is_live() {
            return Ok(());
        }
        let _starting = topic.start.lock().await;
        if topic.is_live() || topic.is_stopped() {
            return Ok(());
        }
        // The subscriber is told `unavailable` and asks again (the protocol's "retry"): a
        // subject started while NATS is away would be acknowledged with no position, and the
        // events relayed meanwhile never delivered nor announced.
        if self.inner.nats.connection_state() != async_nats::connection::State::Connected {
            return Err(FanOutError::Disconnected);
        }
        // Bounded: the client's command buffer can fill during an outage, and the connection
        // that asked must not wait on it.
        let subscriber = tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            self.inner.nats.subscribe(topic.subject.to_string()),
        )
        .await
        .map_err(|_| FanOutError::Subscribe(format!("no answer within {SUBSCRIBE_TIMEOUT:?}")))?
        .map_err(|e| FanOutError::Subscribe(e.to_string()))?;
        let task = if topic.snapshot {
            tokio::spawn(snapshots::dispatch(
                Arc::downgrade(topic),
                subscriber,
                self.inner.metrics.clone(),
            ))
        } else {
            tokio::spawn(
                self.inner
                    .events
                    .clone()
                    .dispatch(Arc::downgrade(topic), subscriber),
            )
        };
        topic.dispatching(task.abort_handle());
        if topic.snapshot {
            self.inner.current.server_barrier(topic).await;
        } else {
            self.inner.events.server_barrier(topic).await;
        }
        topic.confirmed(&self.inner.metrics);
        self.inner.looks.schedule([topic.subject.clone()]);
        Ok(())
    }

    /// After NATS reconnects: messages may have been missed, so every snapshot subject's
    /// retained value is read again and pushed to its subscribers where it is newer, and every
    /// event subject reads what it may have missed; and again at [`looks::LOOKS_AGAIN`].
    pub async fn resync(&self) {
        self.inner.events.reconnected();
        let topics = self.topics_in_use();
        self.inner
            .looks
            .schedule(topics.iter().map(|t| t.subject.clone()));
        self.read_again(topics, Missed::Maybe).await;
    }

    /// Reads every subject in use again (snapshots their retained value, events what follows
    /// their head) each time `dropped` is notified, until `stop`. The NATS client drops the
    /// messages of a subscription whose buffer is full (a slow consumer), and does not say
    /// which subject's: a dropped snapshot would stay unseen until its subject changes again,
    /// and a dropped last event until the next one. Reads are [`DROPPED_READS_APART`] apart at
    /// least, twice as far while drops go on (up to [`DROPPED_READS_APART_MOST`]): a gateway
    /// that keeps dropping is short of CPU, and each read asks JetStream about every subject.
    pub fn read_again_when_dropped(&self, dropped: Arc<Notify>, stop: CancellationToken) {
        let fanout = self.clone();
        let drops = self.inner.metrics.nats_slow_consumer.clone();
        tokio::spawn(async move {
            let mut apart = DROPPED_READS_APART;
            loop {
                tokio::select! {
                    () = dropped.notified() => {}
                    () = stop.cancelled() => return,
                }
                tracing::warn!(
                    "NATS dropped messages of a subscription with a full buffer; reading \
                     current snapshots and missed events again"
                );
                let before = drops.get();
                fanout
                    .read_again(fanout.topics_in_use(), Missed::Maybe)
                    .await;
                tokio::select! {
                    () = tokio::time::sleep(apart) => {}
                    () = stop.cancelled() => return,
                }
                apart = if drops.get() > before {
                    (apart * 2).min(DROPPED_READS_APART_MOST)
                } else {
                    DROPPED_READS_APART
                };
            }
        });
    }

    /// Compares the subjects in use with the streams every `every`, until `stop`. A message
    /// can be lost on its way here with nothing to say so: published at another server of a
    /// NATS cluster while the route to this instance's server was down, it is stored by the
    /// stream but never sent on. A snapshot subject that changes rarely would stay stale until
    /// it did, and an event with none after it would wait for the next. So each check reads
    /// the current value of every alerts and fleet subject in use and hands it out where it is
    /// newer, and has every event subject whose newest stored event is beyond what was
    /// delivered here read what it missed (`Events::check`). Telemetry subjects are
    /// left out: a device's next reading replaces what was lost, and there may be thousands.
    /// A check is skipped while NATS is away (the reconnect reads everything again), reads a
    /// few subjects at a time (`CHECK_READS_AT_ONCE`), and looks only at subjects
    /// whose first read is done (that read proves the subscription is in place).
    pub fn check_streams_every(&self, every: Duration, stop: CancellationToken) {
        let fanout = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.cancelled() => return,
                }
                if fanout.inner.nats.connection_state() != async_nats::connection::State::Connected
                {
                    continue;
                }
                tokio::select! {
                    () = fanout.check_streams() => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// One check of [`Self::check_streams_every`].
    async fn check_streams(&self) {
        let (mut snapshots, mut events) = (Vec::new(), Vec::new());
        for topic in self.topics_in_use().into_iter().filter(|t| t.is_live()) {
            match topic.subject {
                Subject::Alerts(_) | Subject::Fleet(_) => snapshots.push(topic),
                Subject::Events(..) => events.push(topic),
                Subject::Telemetry(..) => {}
            }
        }
        let metrics = &self.inner.metrics;
        let (recovered, behind) = futures::join!(
            self.inner.current.check(snapshots),
            self.inner.events.check(events)
        );
        if recovered + behind > 0 {
            metrics.snapshots_recovered.inc_by(recovered);
            metrics.event_topics_behind.inc_by(behind);
            tracing::warn!(
                snapshots = recovered,
                event_topics = behind,
                "messages stored in the streams never arrived live; handed out"
            );
        }
    }

    /// Every topic with a subscription on this instance.
    fn topics_in_use(&self) -> Vec<Arc<Topic>> {
        let topics = self.inner.topics.lock();
        topics.by_subject.values().cloned().collect()
    }

    /// A look of [`looks`] at the `subjects` still in use.
    async fn look_again(&self, subjects: &[Subject]) {
        let topics: Vec<Arc<Topic>> = {
            let topics = self.inner.topics.lock();
            subjects
                .iter()
                .filter_map(|s| topics.by_subject.get(s).cloned())
                .collect()
        };
        self.read_again(topics, Missed::Unlikely).await;
    }

    /// Snapshot subjects read their retained value, event subjects what follows their head.
    /// Where messages may have been missed (`Missed::Maybe`), an event subject with no place
    /// to read from is marked for its subscribers to be told (see `Events::retry_floor`).
    async fn read_again(&self, topics: Vec<Arc<Topic>>, missed: Missed) {
        let (snapshots, events): (Vec<_>, Vec<_>) = topics.into_iter().partition(|t| t.snapshot);
        for topic in &events {
            // Not one whose first read is still on its way: that read places it.
            if missed == Missed::Maybe && topic.is_live() {
                let mut log = topic.log.lock();
                log.lost_unplaced |= log.fill_from().is_none();
            }
            topic.resync.notify_one();
        }
        self.inner.current.resync(snapshots).await;
    }
}

/// One unit of a gauge of work in progress, given back however the work ends (aborted too).
struct InProgress(Gauge);

impl InProgress {
    fn count(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}
