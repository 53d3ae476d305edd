//! Reads of a stream's newest message for a subject, asked of the stream's leader first.
//!
//! A direct get (`$JS.API.DIRECT.GET`) is answered by any replica of the stream, and a replica
//! can be a little behind its leader: on a replicated stream (`--stream-replicas 3`) a
//! message the leader has acknowledged is missing from the replica that answers about one
//! read in ten right after the write (measured on a three-node nats-server 2.9 cluster). A new
//! subscriber's current value read that way can be the one before, and stay so until the
//! subject changes again; an event topic's newest events can be left out of a resume.
//!
//! So the reads whose answer must hold every acknowledged message ask the leader
//! (`$JS.API.STREAM.MSG.GET`), which only answers with what it stored. When the leader does
//! not answer within [`LEADER_TIMEOUT`] (none while the stream elects one) a replica is asked
//! instead, and the answer is marked [`Source::Replica`]: it may be behind, and the caller
//! asks again. For [`LEADER_AWAY`] after that, reads go to the replicas at once: an election
//! lasts seconds, and a wait on every read meanwhile would hold up every resume and gap read
//! behind it. A single server (`--stream-replicas 1`) is its streams' only replica and their
//! leader: both reads give the same answer.

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{self, stream::Stream};
use parking_lot::Mutex;
use tokio::time::Instant;

/// How long the leader may take before a replica is asked instead.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after the leader did not answer reads go to the replicas without asking it.
pub const LEADER_AWAY: Duration = Duration::from_secs(2);
/// How long a replica may take before the stream counts as unreadable.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// Who answered a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The stream's leader: the answer holds every message it acknowledged.
    Leader,
    /// A replica, as the leader did not answer: the answer may be behind.
    Replica,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the stream's leader is not answering")]
    LeaderAway,
}

/// The reads of one stream, and whether its leader answers.
pub struct StreamReads {
    js: jetstream::Context,
    name: String,
    stream: tokio::sync::OnceCell<Stream<()>>,
    /// Until when the leader is taken to be away.
    leader_away_until: Mutex<Option<Instant>>,
}

impl StreamReads {
    pub fn new(js: jetstream::Context, name: impl Into<String>) -> Self {
        Self {
            js,
            name: name.into(),
            stream: tokio::sync::OnceCell::new(),
            leader_away_until: Mutex::new(None),
        }
    }

    /// A handle on the stream to read with, made without asking the server: its info is the
    /// leader's to give, and a stream electing one has none for seconds, while its replicas
    /// still answer reads.
    pub async fn stream(&self) -> Result<&Stream<()>, ReadError> {
        self.stream
            .get_or_try_init(|| async {
                self.js
                    .get_stream_no_info(&self.name)
                    .await
                    .map_err(|e| ReadError::Failed(e.to_string()))
            })
            .await
    }

    /// Whether the leader did not answer a moment ago.
    fn leader_away(&self) -> bool {
        let mut away = self.leader_away_until.lock();
        match *away {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *away = None;
                false
            }
            None => false,
        }
    }

    fn leader_answered(&self, answered: bool) {
        *self.leader_away_until.lock() = (!answered).then(|| Instant::now() + LEADER_AWAY);
    }

    /// The newest message the stream holds for `subject` (`None`: it holds none), and who said
    /// so. Whatever the answer, it is a round trip through the NATS server the client is
    /// connected to, which handles the connection's commands in order.
    pub async fn last(&self, subject: &str) -> Result<(Option<StreamMessage>, Source), ReadError> {
        let stream = self.stream().await?;
        if !self.leader_away() {
            let read = stream.get_last_raw_message_by_subject(subject);
            match tokio::time::timeout(LEADER_TIMEOUT, read).await {
                Ok(Ok(message)) => {
                    self.leader_answered(true);
                    return Ok((Some(message), Source::Leader));
                }
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    self.leader_answered(true);
                    return Ok((None, Source::Leader));
                }
                Ok(Err(e)) => {
                    tracing::debug!(%subject, error = %e, "the stream's leader refused a read; asking a replica");
                }
                Err(_) => {
                    self.leader_answered(false);
                    tracing::debug!(%subject, "the stream's leader did not answer a read; asking a replica");
                }
            }
        }
        let message = self.last_from_replica(subject, REPLICA_TIMEOUT).await?;
        Ok((message, Source::Replica))
    }

    /// The newest message the stream holds for `subject`, as whichever replica answers first
    /// has it (a direct get), within `wait`: it may be behind its leader, but it needs no
    /// leader. For reads where only a negative answer must be confirmed.
    pub async fn last_from_replica(
        &self,
        subject: &str,
        wait: Duration,
    ) -> Result<Option<StreamMessage>, ReadError> {
        let stream = self.stream().await?;
        let read = stream.direct_get_last_for_subject(subject);
        match tokio::time::timeout(wait, read).await {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => Err(ReadError::Failed(e.to_string())),
            Err(_) => Err(ReadError::Timeout(wait)),
        }
    }

    /// The first message of `subject` at stream sequence `from` or later, asked of the leader
    /// only (at once [`ReadError::LeaderAway`] while it is taken to be away): for where a
    /// replica said there is none, though the leader stored one.
    pub async fn first_from_leader(
        &self,
        subject: &str,
        from: u64,
    ) -> Result<Option<StreamMessage>, ReadError> {
        if self.leader_away() {
            return Err(ReadError::LeaderAway);
        }
        let stream = self.stream().await?;
        let read = stream.get_first_raw_message_by_subject(subject, from);
        match tokio::time::timeout(LEADER_TIMEOUT, read).await {
            Ok(Ok(message)) => {
                self.leader_answered(true);
                Ok(Some(message))
            }
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                self.leader_answered(true);
                Ok(None)
            }
            Ok(Err(e)) => Err(ReadError::Failed(e.to_string())),
            Err(_) => {
                self.leader_answered(false);
                Err(ReadError::Timeout(LEADER_TIMEOUT))
            }
        }
    }
}
