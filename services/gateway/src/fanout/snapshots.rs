//! Snapshot subjects (alerts, fleet, telemetry): a new subscriber gets the current value at
//! once, the newest frame seen on this instance or else the last message retained in the
//! JetStream `PULSE_STATE` stream, and every message after it as it arrives.
//!
//! A subject's first read is also what proves its NATS subscription is in place before the
//! first subscriber is told so (see [`CurrentValues::server_barrier`]). A slow or absent
//! JetStream never blocks a subscriber longer than [`BARRIER_WAIT`](super::BARRIER_WAIT): the read then runs beside
//! the connection, and is retried with backoff until it answers or the topic is gone.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::extract::ws::Utf8Bytes;
use futures::StreamExt as _;
use pulse_proto::Subject;
use pulse_proto::subject::STATE_STREAM;

use prometheus_client::metrics::gauge::Gauge;

use super::topic::Topic;
use super::{InProgress, within_barrier};
use crate::frame::{Frame, seq_of};
use crate::metrics::Metrics;
use crate::queue::ClientQueue;
use crate::stream_reads::{Source, StreamReads};

/// How many times a value only a replica gave is read again, spread over about 12 s: longer
/// than a stream's election lasts.
const CONFIRM_ATTEMPTS: u32 = 5;
/// Retained values read at once when every snapshot subject is read again after a reconnect.
const RESYNC_READS_AT_ONCE: usize = 32;
/// Retained values read at once by the periodic check: it is in no hurry, and spreads its reads
/// over the time they take rather than asking the stream's leader for thousands at once.
pub(super) const CHECK_READS_AT_ONCE: usize = 4;

/// Reads of the retained values in `PULSE_STATE`, shared by every snapshot topic.
#[derive(Clone)]
pub(super) struct CurrentValues {
    inner: Arc<Reader>,
}

struct Reader {
    reads: StreamReads,
    /// `pulse_gateway_snapshot_retries`.
    retries: Gauge,
}

/// A topic's retry in progress: counted, and ended whatever ends the task.
struct Retrying<'a> {
    topic: &'a Topic,
    _counted: InProgress,
}

impl<'a> Retrying<'a> {
    fn count(topic: &'a Topic, gauge: &Gauge) -> Self {
        Self {
            topic,
            _counted: InProgress::count(gauge),
        }
    }
}

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        self.topic.end_retry();
    }
}

impl CurrentValues {
    pub(super) fn new(js: jetstream::Context, retries: Gauge) -> Self {
        Self {
            inner: Arc::new(Reader {
                reads: StreamReads::new(js, STATE_STREAM),
                retries,
            }),
        }
    }

    /// Reads the current value before the topic's first subscriber is told `subscribed`. The
    /// read is a request sent after the SUB on the same connection, and the server handles a
    /// connection's commands in order: any answer (a value, none, no stream) proves the
    /// subscription is in place, so every message published after the reply reaches this
    /// instance. Without it, a SUB still on its way loses a message published at once from
    /// elsewhere, and where no stream holds a copy nothing brings it back.
    ///
    /// A JetStream slower than [`BARRIER_WAIT`](super::BARRIER_WAIT) holds the subscribe no longer: the read goes
    /// on beside the connection and hands its value to every subscriber when it comes.
    pub(super) async fn server_barrier(&self, topic: &Arc<Topic>) {
        if !topic.ask_current() {
            return;
        }
        let (values, t) = (self.clone(), topic.clone());
        let read = async move { values.fetch(&t).await };
        let (values, t) = (self.clone(), topic.clone());
        match within_barrier(read, move |answer| values.hand_out(t, answer)).await {
            // Remembered: each subscriber is handed it by `queue_current`.
            Some(Ok(fetched)) => {
                if fetched.unconfirmed {
                    self.retry(topic.clone());
                }
            }
            Some(Err(())) => self.retry(topic.clone()),
            None => tracing::debug!(subject = %topic.subject, "current value read goes on beside"),
        }
    }

    /// Queues the subject's current value for one new subscriber. When JetStream cannot be
    /// read, the subscription stands and the value follows once it can (see
    /// [`CurrentValues::retry`]).
    pub(super) fn queue_current(&self, topic: &Arc<Topic>, queue: &ClientQueue) {
        if topic.ask_current() {
            // Only where no first read was made (see `server_barrier`).
            let values = self.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let answer = values.fetch(&topic).await;
                values.hand_out(topic, answer);
            });
        }
        if let Some(frame) = topic.current() {
            queue.push_snapshot(frame);
        }
    }

    /// Hands the answer of a read to every subscriber where it is newer than what they were
    /// handed: whoever subscribed while it ran is already a subscriber when it comes. No
    /// answer, or only a replica's: read again.
    fn hand_out(&self, topic: Arc<Topic>, answer: Result<Fetched, ()>) {
        match answer {
            Ok(fetched) => {
                if let Some(frame) = &fetched.newer {
                    topic.push_current(frame);
                }
                if fetched.unconfirmed {
                    self.retry(topic);
                }
            }
            Err(()) => self.retry(topic),
        }
    }

    /// Reads every one of `topics`' retained value again and hands it out where it is newer:
    /// after NATS reconnects (messages may have been missed), and a moment and a while after
    /// a first read ([`super::looks::LOOKS_AGAIN`]). A few reads run at once: one at a time,
    /// thousands of subjects would leave the last ones' subscribers on a stale value for
    /// seconds after every reconnect.
    pub(super) async fn resync(&self, topics: impl IntoIterator<Item = Arc<Topic>>) {
        futures::stream::iter(topics)
            .for_each_concurrent(RESYNC_READS_AT_ONCE, |topic| async move {
                let answer = self.fetch(&topic).await;
                self.hand_out(topic, answer);
            })
            .await;
    }

    /// Reads every one of `topics`' retained value again and hands it out where it is newer,
    /// as [`Self::resync`] does, but is not retried where JetStream does not answer: the check
    /// that calls it comes round again. Returns how many of the values read were newer.
    pub(super) async fn check(&self, topics: impl IntoIterator<Item = Arc<Topic>>) -> u64 {
        let newer = futures::stream::iter(topics)
            .map(|topic| async move {
                let Ok(Fetched {
                    newer: Some(frame), ..
                }) = self.fetch(&topic).await
                else {
                    return false;
                };
                topic.push_current(&frame);
                true
            })
            .buffer_unordered(CHECK_READS_AT_ONCE)
            .filter(|newer| std::future::ready(*newer))
            .count()
            .await;
        newer as u64
    }

    /// Reads the retained value again, with backoff, until JetStream answers or the topic is
    /// gone, and hands it to every subscriber. An answer only a replica gave is handed out
    /// too, and the leader asked again, [`CONFIRM_ATTEMPTS`] times at most: a replica is behind
    /// by moments, and a stream without a leader for longer is read from replicas alone.
    fn retry(&self, topic: Arc<Topic>) {
        if !topic.begin_retry() {
            return; // one is running
        }
        let values = self.clone();
        tokio::spawn(async move {
            let _retrying = Retrying::count(&topic, &values.inner.retries);
            let mut backoff = pulse_common::backoff::Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(5),
            );
            let mut unconfirmed = 0;
            while !topic.is_stopped() {
                tokio::time::sleep(backoff.next_delay()).await;
                let Ok(fetched) = values.fetch(&topic).await else {
                    continue;
                };
                if let Some(frame) = &fetched.newer {
                    topic.push_current(frame);
                }
                if !fetched.unconfirmed {
                    tracing::debug!(subject = %topic.subject, "current value read after all");
                    return;
                }
                unconfirmed += 1;
                if unconfirmed == CONFIRM_ATTEMPTS {
                    return;
                }
            }
        });
    }

    /// The message retained in `PULSE_STATE` for `subject`, read from the stream's leader
    /// ([`StreamReads::last`]): `None` when there is none, `Err` when JetStream did not
    /// answer in time. Whatever the answer, the call is a round trip through the NATS server.
    async fn read(
        &self,
        subject: &Subject,
    ) -> Result<(Option<jetstream::message::StreamMessage>, Source), ()> {
        self.inner
            .reads
            .last(&subject.to_string())
            .await
            .map_err(|e| tracing::warn!(%subject, error = %e, "cannot read the current value"))
    }

    /// Reads the retained last message of a snapshot subject from JetStream and remembers it
    /// when it is newer than the topic's current value.
    async fn fetch(&self, topic: &Topic) -> Result<Fetched, ()> {
        let (message, source) = self.read(&topic.subject).await?;
        let newer = message.and_then(|message| {
            let text = Utf8Bytes::try_from(message.payload).ok()?;
            let frame = Frame {
                topic: topic.id,
                seq: seq_of(Some(&message.headers)),
                snapshot: true,
                text,
                received: Instant::now(),
            };
            topic.remember(&frame).then_some(frame)
        });
        Ok(Fetched {
            newer,
            unconfirmed: source == Source::Replica,
        })
    }
}

/// What a read of the state stream found.
struct Fetched {
    /// The value read, when it was newer than the topic's current value (and now is it).
    newer: Option<Frame>,
    /// Only a replica answered: the value may be behind, so it is read again.
    unconfirmed: bool,
}

/// A snapshot subject's dispatch: each message becomes one frame, pushed to every subscriber
/// when it is newer than the current value.
pub(super) async fn dispatch(
    topic: Weak<Topic>,
    mut subscriber: async_nats::Subscriber,
    metrics: Metrics,
) {
    while let Some(message) = subscriber.next().await {
        let Some(topic) = topic.upgrade() else { break };
        let received = Instant::now();
        metrics.messages_in.inc();
        let span = topic.span(message.headers.as_ref());
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
