//! Fan-out: one NATS subscription per subject in use on this instance, shared by every local
//! client subscribed to it, each message turned into a frame once and pushed to every
//! subscriber's queue.
//!
//! The first local subscriber of a subject creates its NATS subscription; the last one leaving
//! removes it. A new subscriber gets the subject's current value at once: the newest frame seen
//! on this instance, or the last message retained in the JetStream `PULSE_STATE` stream.
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
use pulse_proto::Subject;
use pulse_proto::subject::STATE_STREAM;
use tokio::task::AbortHandle;

use crate::frame::{Frame, TopicId, seq_of};
use crate::metrics::Metrics;
use crate::queue::{ClientQueue, Pushed};

/// Identifies a connection on this instance.
pub type ConnId = u64;

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
}

impl Topic {
    /// Keeps `frame` as the current value if it is newer than the one held.
    fn remember(&self, frame: &Frame) -> bool {
        let mut latest = self.latest.lock();
        match &*latest {
            Some(held) if frame.seq != 0 && frame.seq <= held.seq => false,
            _ => {
                *latest = Some(frame.clone());
                true
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
}

#[derive(Clone)]
pub struct FanOut {
    inner: Arc<Inner>,
}

struct Inner {
    nats: async_nats::Client,
    js: jetstream::Context,
    state_stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
    topics: Mutex<HashMap<Subject, Arc<Topic>>>,
    next_topic: AtomicU64,
    metrics: Metrics,
}

impl FanOut {
    pub fn new(nats: async_nats::Client, metrics: Metrics) -> Self {
        let js = jetstream::new(nats.clone());
        Self {
            inner: Arc::new(Inner {
                nats,
                js,
                state_stream: tokio::sync::OnceCell::new(),
                topics: Mutex::new(HashMap::new()),
                next_topic: AtomicU64::new(1),
                metrics,
            }),
        }
    }

    /// Number of subjects with a NATS subscription on this instance.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.lock().len()
    }

    /// Adds `queue` as a subscriber of `subject` and queues the current value for it.
    pub async fn subscribe(
        &self,
        conn: ConnId,
        queue: &Arc<ClientQueue>,
        subject: &Subject,
    ) -> Result<Arc<Topic>, FanOutError> {
        let topic = {
            let mut topics = self.inner.topics.lock();
            let topic = topics
                .entry(subject.clone())
                .or_insert_with(|| {
                    Arc::new(Topic {
                        id: self.inner.next_topic.fetch_add(1, Ordering::Relaxed),
                        subject: subject.clone(),
                        snapshot: subject.is_snapshot(),
                        subscribers: RwLock::new(HashMap::new()),
                        latest: Mutex::new(None),
                        started: tokio::sync::OnceCell::new(),
                        retained: tokio::sync::OnceCell::new(),
                        dispatch: Mutex::new(None),
                        removed: AtomicBool::new(false),
                        counted: AtomicBool::new(false),
                    })
                })
                .clone();
            topic.subscribers.write().insert(conn, queue.clone());
            topic
        };
        if let Err(e) = topic
            .started
            .get_or_try_init(|| self.start_dispatch(&topic))
            .await
        {
            self.unsubscribe(conn, &topic);
            return Err(e);
        }
        if topic.snapshot {
            self.queue_current(&topic, queue).await;
        }
        Ok(topic)
    }

    /// Removes `conn` from `topic`; the last subscriber leaving ends the NATS subscription.
    pub fn unsubscribe(&self, conn: ConnId, topic: &Arc<Topic>) {
        let mut topics = self.inner.topics.lock();
        let empty = {
            let mut subscribers = topic.subscribers.write();
            subscribers.remove(&conn);
            subscribers.is_empty()
        };
        if empty {
            if topics
                .get(&topic.subject)
                .is_some_and(|current| Arc::ptr_eq(current, topic))
            {
                topics.remove(&topic.subject);
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
        let task = tokio::spawn(dispatch(
            Arc::downgrade(topic),
            subscriber,
            self.inner.metrics.clone(),
        ));
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
    async fn server_barrier(&self, topic: &Topic) {
        // Disconnected: the SUB is sent again on reconnect; there is nothing to wait for.
        if !topic.snapshot
            && self.inner.nats.connection_state() == async_nats::connection::State::Connected
        {
            let _ = self.read_retained(&topic.subject).await;
        }
    }

    /// Queues the subject's current value for one new subscriber.
    async fn queue_current(&self, topic: &Arc<Topic>, queue: &ClientQueue) {
        if topic.latest.lock().is_none() {
            topic
                .retained
                .get_or_init(|| async {
                    self.fetch_retained(topic).await;
                })
                .await;
        }
        let current = topic.latest.lock().clone();
        if let Some(frame) = current {
            queue.push_snapshot(frame);
        }
    }

    /// The message retained in `PULSE_STATE` for `subject`, if any. Whatever the answer, the
    /// call is a round trip through the NATS server.
    async fn read_retained(&self, subject: &Subject) -> Option<jetstream::message::StreamMessage> {
        let stream = self
            .inner
            .state_stream
            .get_or_try_init(|| self.inner.js.get_stream(STATE_STREAM))
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot open the state stream"))
            .ok()?;
        stream
            .direct_get_last_for_subject(subject.to_string())
            .await
            .map_err(|e| tracing::debug!(%subject, error = %e, "no retained value"))
            .ok()
    }

    /// Reads the retained last message of a snapshot subject from JetStream and remembers it.
    async fn fetch_retained(&self, topic: &Topic) -> Option<Frame> {
        let message = self.read_retained(&topic.subject).await?;
        let text = Utf8Bytes::try_from(message.payload).ok()?;
        let frame = Frame {
            topic: topic.id,
            seq: seq_of(Some(&message.headers)),
            snapshot: true,
            text,
            received: Instant::now(),
        };
        topic.remember(&frame);
        topic.latest.lock().clone()
    }

    /// After NATS reconnects: messages may have been missed, so every snapshot subject's
    /// retained value is read again and pushed to its subscribers where it is newer.
    pub async fn resync(&self) {
        let topics: Vec<Arc<Topic>> = self.inner.topics.lock().values().cloned().collect();
        for topic in topics.into_iter().filter(|t| t.snapshot) {
            let before = topic.latest.lock().as_ref().map(|f| f.seq);
            if let Some(frame) = self.fetch_retained(&topic).await
                && Some(frame.seq) != before
            {
                let subscribers = topic.subscribers.read();
                for queue in subscribers.values() {
                    queue.push_snapshot(frame.clone());
                }
            }
        }
    }
}

async fn dispatch(topic: Weak<Topic>, mut subscriber: async_nats::Subscriber, metrics: Metrics) {
    while let Some(message) = subscriber.next().await {
        let Some(topic) = topic.upgrade() else { break };
        let received = Instant::now();
        metrics.messages_in.inc();
        // A message that carries a trace context gets a span continuing that trace, so a trace
        // runs from the database change through the poller to the fan-out. Untraced messages
        // (the common case) cost no span at the default level.
        let traced = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(pulse_proto::headers::TRACEPARENT).is_some());
        let span = if traced {
            let span = tracing::info_span!(
                "fanout",
                subject = %topic.subject,
                recipients = topic.subscribers.read().len()
            );
            pulse_common::trace_headers::continue_from(&span, message.headers.as_ref());
            span
        } else {
            tracing::trace_span!("fanout", subject = %topic.subject)
        };
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
