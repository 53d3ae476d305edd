//! Keeps a deposed poller's late publishes out of the state stream.
//!
//! A poller cut off from NATS may still have publishes on their way (in its client's buffer,
//! in a socket) when it steps down; they arrive when the partition heals, after its successor
//! published newer state. Stored, one would become the subject's current value, which
//! gateways and outside services read as the newest state until the subject changes again.
//!
//! So every snapshot goes out with `Nats-Expected-Last-Subject-Sequence`: the stream sequence
//! of the message this poller last stored on that subject. JetStream stores it only if nothing
//! was stored there since, so once the successor wrote a subject, the late publish is refused.
//! (Subscribers of the subject still receive it; its `seq` is below what they hold, and they
//! drop it.) The first publish of a subject in an activation has nothing to expect and is
//! stored as it comes.
//!
//! A refusal is settled by reading the subject's last message: ours stored already (its
//! acknowledgement was lost) counts as done; an older one (a predecessor's late first publish,
//! a message deleted by hand, none at all) is replaced by sending ours again expecting it; a
//! newer one wins, ours is dropped, and the seq clock is raised past it so the next cycle's
//! publish is newer still.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use pulse_proto::Subject;
use pulse_proto::subject::STATE_STREAM;

use crate::seq::SeqClock;

/// What this poller last stored per state subject, in this activation.
pub struct Fence {
    stored: HashMap<Subject, u64>,
    seq: Arc<SeqClock>,
}

impl Fence {
    pub fn new(seq: Arc<SeqClock>) -> Self {
        Self {
            stored: HashMap::new(),
            seq,
        }
    }

    /// The stream sequence a publish on `subject` must find there, when known.
    pub(crate) fn expected(&self, subject: &Subject) -> Option<u64> {
        self.stored.get(subject).copied()
    }

    /// Records that JetStream stored our message on `subject` as `sequence`.
    pub(crate) fn stored(&mut self, subject: Subject, sequence: u64) {
        self.stored.insert(subject, sequence);
    }

    /// Forgets the subjects `keep` refuses (tenants and devices that are gone).
    pub fn retain(&mut self, keep: impl Fn(&Subject) -> bool) {
        self.stored.retain(|s, _| keep(s));
    }

    /// Decides what to do with our publish of `ours` on `subject`, which JetStream refused
    /// because the subject's last message was not the one expected (see the module docs).
    pub(crate) async fn refused(
        &mut self,
        js: &jetstream::Context,
        subject: &Subject,
        ours: u64,
    ) -> Result<Verdict, String> {
        let name = subject.to_string();
        let stream = js
            .get_stream_no_info(STATE_STREAM)
            .await
            .map_err(|e| format!("cannot open the state stream: {e}"))?;
        let last = match stream.get_last_raw_message_by_subject(&name).await {
            Ok(last) => last,
            // Nothing to replace: ours goes in as the first.
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok(Verdict::Replace { expected: None });
            }
            Err(e) => return Err(format!("cannot read the last message of {name}: {e}")),
        };
        // A seq beyond 2^53 - 1 is not a poller's: `pulse_seq` passes it over, and ours
        // replaces the message.
        let verdict = match crate::streams::pulse_seq(&last.headers) {
            Some(theirs) if theirs == ours => Verdict::Stored,
            Some(theirs) if theirs > ours => {
                self.seq.raise_floor(theirs);
                Verdict::Newer { theirs }
            }
            _ => {
                return Ok(Verdict::Replace {
                    expected: Some(last.sequence),
                });
            }
        };
        self.stored(subject.clone(), last.sequence);
        Ok(verdict)
    }
}

/// What becomes of a refused publish.
pub(crate) enum Verdict {
    /// It is stored already (its acknowledgement was lost): done.
    Stored,
    /// The subject holds a newer message, which stays; the seq clock is past it now.
    Newer { theirs: u64 },
    /// Ours is newer: send it again, expecting the message there now.
    Replace { expected: Option<u64> },
}
