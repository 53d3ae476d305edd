//! Reading an event topic's history from the JetStream stream `PULSE_EVENTS` by the events'
//! own `seq` (the `Pulse-Seq` header).
//!
//! A topic's newest event is asked of the stream's leader ([`StreamReads::last`]), so a read
//! ends at the newest event acknowledged. The events up to it are read with direct gets,
//! which any replica answers; a replica that says there is none before that end is behind,
//! and the leader is asked instead, as it is when no replica answers. A read whose end only a
//! replica gave (the leader not answering) says so ([`Stored::from_replica`]): a resume reads
//! again until the leader answers ([`unsettled`]).
//!
//! The stream numbers messages across all subjects; an event topic's `seq` increases with
//! them, so the first stored event after a given `seq` is found by a binary search over stream
//! sequences, then read forward. Every read has a deadline: a slow or absent JetStream ends in
//! [`HistoryError`], never in a stalled caller.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use axum::extract::ws::Utf8Bytes;
use prometheus_client::metrics::counter::Counter;
use pulse_proto::Subject;
use pulse_proto::subject::{EVENTS_RELAYED_PER_TOPIC_PASS, EVENTS_STREAM};

use crate::frame::{Frame, seq_of};
use crate::ids::TopicId;
use crate::stream_reads::{ReadError, Source, StreamReads};

/// How long one JetStream read may take before the history counts as unavailable.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How far below the first `seq` wanted a read that found a hole starts again: twice as far
/// as a relay retry can store an event out of order.
const LOOKBACK: u64 = 2 * EVENTS_RELAYED_PER_TOPIC_PASS;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading the events stream failed: {0}")]
    Read(String),
    #[error("reading the events stream took longer than {READ_TIMEOUT:?}")]
    Timeout,
}

impl From<ReadError> for HistoryError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout(_) => HistoryError::Timeout,
            other => HistoryError::Read(other.to_string()),
        }
    }
}

/// What a topic's history holds after a given `seq`.
#[derive(Debug, Default)]
pub struct Stored {
    /// Events after the asked `seq`, ascending.
    pub frames: Vec<Frame>,
    /// Set when events right after the asked `seq` are gone (expired or evicted, or beyond the
    /// replay limit): the `seq` of the first event in `frames`.
    pub missing_before: Option<u64>,
    /// The events after the asked `seq` were more than the limit: only the newest were read.
    pub limited: bool,
    /// The `seq` of the subject's oldest event the stream still holds, when it holds one after
    /// the asked `seq`: below `missing_before`, events the stream holds were passed over for
    /// the limit, not gone from it.
    pub oldest_stored: Option<u64>,
    /// The stream retains no event of the subject at all: any the caller knows of expired
    /// (or were evicted) before this read.
    pub none_retained: bool,
    /// Where the read ends (the topic's newest event, or that it has none) is a replica's
    /// word, the stream's leader not answering (as while the stream elects one): a replica
    /// that is behind may lack the newest events, or all of them, and cannot catch up without
    /// a leader.
    pub from_replica: bool,
}

/// Whether a read may have come out short for want of the stream's leader: it ended on a
/// replica's word, or nothing answered in time (a hung or lost node, a stream electing a
/// leader). Worth making again shortly, unlike a refusal (no JetStream, no permission).
pub fn unsettled(read: &Result<Stored, HistoryError>) -> bool {
    match read {
        Ok(stored) => stored.from_replica,
        Err(e) => matches!(e, HistoryError::Timeout),
    }
}

/// Reads of the events stream, shared by every topic of a gateway.
pub struct History {
    reads: StreamReads,
    /// Every read made, counted.
    gets: Counter,
    /// Since when reads have been [`unsettled`], until one ends on the leader's word
    /// ([`History::unsettled_for_less_than`]).
    unsettled_since: parking_lot::Mutex<Option<Instant>>,
    /// When a read was last [`unsettled`].
    last_unsettled: parking_lot::Mutex<Option<Instant>>,
}

/// One stored event: its stream sequence and its `seq`.
#[derive(Clone)]
struct Found {
    stream_seq: u64,
    seq: u64,
    message: jetstream::message::StreamMessage,
}

impl History {
    pub fn new(js: jetstream::Context, gets: Counter) -> Self {
        Self {
            reads: StreamReads::new(js, EVENTS_STREAM),
            gets,
            unsettled_since: parking_lot::Mutex::new(None),
            last_unsettled: parking_lot::Mutex::new(None),
        }
    }

    async fn stream(&self) -> Result<&jetstream::stream::Stream<()>, HistoryError> {
        Ok(self.reads.stream().await?)
    }

    /// The `seq` of the newest stored event of `subject`, if any. Whatever the answer, it is a
    /// round trip through the NATS server (the subscribe barrier relies on that).
    pub async fn latest(&self, subject: &Subject) -> Result<Option<u64>, HistoryError> {
        let (found, _) = self.last(&subject.to_string()).await?;
        Ok(found.map(|f| f.seq))
    }

    /// The newest stored event of `name`, from the stream's leader unless it does not answer,
    /// and who answered.
    async fn last(&self, name: &str) -> Result<(Option<Found>, Source), HistoryError> {
        self.gets.inc();
        let (message, source) = self.reads.last(name).await?;
        Ok((message.map(found), source))
    }

    /// The first stored event of `name` at stream sequence `from` or later (the subject's first
    /// without `from`), where `end` is a stream sequence known to hold one of its events: a
    /// replica that says there is none before it is behind, so the leader is asked then. A
    /// leader that does not answer leaves the replica's answer. When no replica answers, the
    /// leader's answer is the one.
    async fn next(
        &self,
        stream: &jetstream::stream::Stream<()>,
        name: &str,
        from: Option<u64>,
        end: u64,
    ) -> Result<Option<Found>, HistoryError> {
        let replica = self
            .timed(stream.direct_get_next_for_subject(name.to_owned(), from))
            .await;
        let from = from.unwrap_or(1);
        let replica = match replica {
            // No replica answered (a request can go to a node that hangs, or was just lost):
            // the leader may.
            Err(HistoryError::Timeout) => {
                self.gets.inc();
                return match self.reads.first_from_leader(name, from).await {
                    Ok(message) => Ok(message.map(found)),
                    // Neither answers: the stream elects a leader, or cannot be reached.
                    Err(ReadError::LeaderAway | ReadError::Timeout(_)) => {
                        Err(HistoryError::Timeout)
                    }
                    Err(e) => Err(e.into()),
                };
            }
            other => other?,
        };
        if replica.is_some() || from > end {
            return Ok(replica);
        }
        self.gets.inc();
        match self.reads.first_from_leader(name, from).await {
            Ok(message) => Ok(message.map(found)),
            Err(e) => {
                tracing::debug!(subject = name, error = %e, "a replica behind and no leader");
                Ok(None)
            }
        }
    }

    /// The stored events of `subject` after `after`, at most `max` of them and `max_bytes` of
    /// their frames (the newest when there are more; always the newest one).
    pub async fn read_after(
        &self,
        subject: &Subject,
        topic: TopicId,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Stored, HistoryError> {
        let read: Result<Stored, HistoryError> = async {
            let started = Instant::now();
            let stream = self.stream().await?;
            let name = subject.to_string();
            let (last, source) = self.last(&name).await?;
            let Some(last) = last else {
                // Nothing stored: either nothing happened after `after`, or it expired. Only the
                // caller's own knowledge (what it delivered since) can tell.
                return Ok(Stored {
                    none_retained: true,
                    from_replica: source == Source::Replica,
                    ..Stored::default()
                });
            };
            let from_replica = source == Source::Replica;
            if last.seq <= after {
                return Ok(Stored {
                    from_replica,
                    ..Stored::default()
                });
            }
            let Some(first) = self.next(stream, &name, None, last.stream_seq).await? else {
                return Ok(Stored {
                    from_replica,
                    ..Stored::default()
                });
            };
            let end = last.stream_seq;
            let mut want = after;
            let mut stored = Stored {
                from_replica,
                oldest_stored: Some(first.seq),
                ..Stored::default()
            };
            if last.seq - after > max as u64 {
                want = last.seq - max as u64;
                stored.limited = true;
            }
            let expired = first.seq > want + 1;
            let start = self
                .first_above(stream, &name, first.clone(), last.clone(), want)
                .await?;
            let let_go;
            (stored.frames, let_go) = self
                .read_forward(stream, &name, topic, start, end, (max, max_bytes))
                .await?;
            // Wanted events let go for the byte budget: the newest are kept, as past the count.
            let trimmed = let_go.is_some_and(|seq| seq > want);
            stored.limited |= trimmed;
            stored.frames.retain(|f| f.seq > want);
            stored.frames.sort_by_key(|f| f.seq);
            stored.frames.dedup_by_key(|f| f.seq);
            // The search assumes a topic's seqs rise with the stream's order. A relay retry stores
            // an event after fewer than `EVENTS_RELAYED_PER_TOPIC_PASS` later ones of its topic,
            // which can mislead it; so when a hole shows, the events are read again from the first
            // one above `want - LOOKBACK`, which no retry moves past the events above `want`. A
            // hole still there then is one (an event passed over as too big, or deleted).
            let holed = stored
                .frames
                .first()
                .is_some_and(|f| !expired && !trimmed && f.seq != want + 1)
                || stored.frames.windows(2).any(|w| w[1].seq != w[0].seq + 1);
            if holed {
                let from = want.saturating_sub(LOOKBACK);
                let start = self.first_above(stream, &name, first, last, from).await?;
                let (mut all, let_go) = self
                    .read_forward(stream, &name, topic, start, end, (usize::MAX, max_bytes))
                    .await?;
                all.retain(|f| f.seq > want);
                all.sort_by_key(|f| f.seq);
                all.dedup_by_key(|f| f.seq);
                let skip = all.len().saturating_sub(max);
                // The events read again below `want` count toward the budget, not as let go.
                stored.limited |= let_go.is_some_and(|seq| seq > want);
                stored.frames = all.split_off(skip);
            }
            if let Some(first) = stored.frames.first()
                && (expired || stored.limited)
            {
                stored.missing_before = Some(first.seq);
            }
            tracing::debug!(
                %subject, after, read = stored.frames.len(), took = ?started.elapsed(),
                "read event history"
            );
            Ok(stored)
        }
        .await;
        let mut since = self.unsettled_since.lock();
        if unsettled(&read) {
            since.get_or_insert_with(Instant::now);
            *self.last_unsettled.lock() = Some(Instant::now());
        } else if read.is_ok() {
            *since = None;
        }
        drop(since);
        read
    }

    /// Whether the events stream's reads have been [`unsettled`] for less than `wait` (or are
    /// not): an unsettled read is worth making again while a leader is elected, which takes
    /// seconds. Shared by every read, so that a stream without a leader for longer holds each
    /// resume up once, not each in turn.
    pub fn unsettled_for_less_than(&self, wait: Duration) -> bool {
        self.unsettled_since
            .lock()
            .is_none_or(|since| since.elapsed() < wait)
    }

    /// When a read was last [`unsettled`], if ever.
    pub fn last_unsettled(&self) -> Option<Instant> {
        *self.last_unsettled.lock()
    }

    /// The first stored event of `name` with a seq above `want`, by a binary search over the
    /// stream sequences from `first` (the subject's first event) to `last` (its last, whose
    /// seq is above `want`).
    async fn first_above(
        &self,
        stream: &jetstream::stream::Stream<()>,
        name: &str,
        first: Found,
        last: Found,
        want: u64,
    ) -> Result<Found, HistoryError> {
        if first.seq > want {
            return Ok(first);
        }
        // `answer` is the earliest event known to be above `want`; an earlier one can only be
        // at a stream sequence in [lo, hi).
        let mut answer = last;
        let (mut lo, mut hi) = (first.stream_seq + 1, answer.stream_seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(probe) = self.next(stream, name, Some(mid), hi).await? else {
                break;
            };
            if probe.stream_seq >= hi {
                hi = mid;
            } else if probe.seq > want {
                hi = probe.stream_seq;
                answer = probe;
            } else {
                lo = probe.stream_seq + 1;
            }
        }
        Ok(answer)
    }

    /// Reads the subject's messages from `start` up to stream sequence `end`, at most `max.0`,
    /// and keeps the newest that fit the byte budget `max.1` ([`Window`]); with the highest
    /// `seq` let go.
    async fn read_forward(
        &self,
        stream: &jetstream::stream::Stream<()>,
        name: &str,
        topic: TopicId,
        start: Found,
        end: u64,
        (max, max_bytes): (usize, usize),
    ) -> Result<(Vec<Frame>, Option<u64>), HistoryError> {
        let mut next = start.stream_seq + 1;
        let mut frames = Window::new(max_bytes);
        frames.extend(frame(topic, start));
        while next <= end && frames.read < max {
            let Some(found) = self.next(stream, name, Some(next), end).await? else {
                break;
            };
            if found.stream_seq > end {
                break;
            }
            next = found.stream_seq + 1;
            frames.extend(frame(topic, found));
        }
        Ok((frames.frames.into(), frames.let_go))
    }

    /// One direct get with a deadline; `None` when there is no such message.
    async fn timed(
        &self,
        get: impl std::future::Future<
            Output = Result<jetstream::message::StreamMessage, jetstream::stream::DirectGetError>,
        >,
    ) -> Result<Option<Found>, HistoryError> {
        self.gets.inc();
        match tokio::time::timeout(READ_TIMEOUT, get).await {
            Ok(Ok(message)) => Ok(Some(found(message))),
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => Err(HistoryError::Read(e.to_string())),
            Err(_) => Err(HistoryError::Timeout),
        }
    }
}

/// The newest frames read, at most `max_bytes` of them (always the newest one): the older ones
/// are let go as newer ones come, so a read holds no more whatever the events' size.
struct Window {
    frames: std::collections::VecDeque<Frame>,
    bytes: usize,
    max_bytes: usize,
    /// Frames read, kept or not.
    read: usize,
    /// The highest `seq` let go, if any was.
    let_go: Option<u64>,
}

impl Window {
    fn new(max_bytes: usize) -> Self {
        Self {
            frames: std::collections::VecDeque::new(),
            bytes: 0,
            max_bytes,
            read: 0,
            let_go: None,
        }
    }

    fn extend(&mut self, frame: Option<Frame>) {
        let Some(frame) = frame else { return };
        self.read += 1;
        self.bytes += frame.text.len();
        self.frames.push_back(frame);
        while self.bytes > self.max_bytes && self.frames.len() > 1 {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.text.len();
                self.let_go = self.let_go.max(Some(old.seq));
            }
        }
    }
}

fn found(message: jetstream::message::StreamMessage) -> Found {
    Found {
        stream_seq: message.sequence,
        seq: seq_of(Some(&message.headers)),
        message,
    }
}

/// The frame of a stored event; none for one that is not text (a publisher other than Pulse's
/// wrote bytes that are not UTF-8): it cannot go out as a text frame, and its place is then
/// missing from what was read, which the reader announces as a gap.
fn frame(topic: TopicId, found: Found) -> Option<Frame> {
    let Ok(text) = Utf8Bytes::try_from(found.message.payload) else {
        tracing::warn!(
            seq = found.seq,
            "passing over a stored event that is not UTF-8"
        );
        return None;
    };
    Some(Frame {
        topic,
        seq: found.seq,
        snapshot: false,
        text,
        received: Instant::now(),
    })
}
