//! Streams lost or broken under the active poller, created again and filled.
//!
//! A stream (or the device bucket) found missing, after a NATS restart that lost its storage
//! or a deletion by hand, is created again. So is one whose storage refuses every write
//! ([`pulse_common::nats::store_failed`]): one created again while the server was still
//! removing the deleted one's files, or whose files went from under the server. What they
//! held is gone either way, so everything is then published again, the registry rewritten
//! and the outbox's events relayed again.
//!
//! The engine looks when the server announces that one was deleted ([`streams::deletions`]),
//! after a reconnect, after any failed write (its own, the relay's, the registry's:
//! [`WriteFailures`]) and with every safety-net poll.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Engine;
use crate::metrics::Stage;
use crate::outbox;
use crate::streams::{self, Failures, WriteFailures};
use pulse_common::nats::{LinkState, unless_dropped};

/// How long a stream announced deleted must have been gone before it is created again: the
/// server removes the deleted stream's files just after it stops listing it.
const SETTLE: Duration = Duration::from_secs(1);

/// How soon after this poller deleted a stream the server's announcement of it comes, at
/// most: one within it is taken for this poller's own.
const OWN_ANNOUNCEMENT: Duration = Duration::from_secs(5);

/// What a restore of lost streams has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restoring {
    /// None under way.
    #[default]
    Idle,
    /// Streams are being created again, and everything is to be published again once they are.
    Unfinished,
    /// As [`Restoring::Unfinished`], and the outbox is marked to be relayed again for the
    /// events stream lost.
    OutboxMarked,
}

/// A deletion the server announced, until it is done.
pub(super) struct Announced {
    /// When the server deleted it, by its clock.
    deleted_at: time::OffsetDateTime,
    /// When it was first found gone.
    gone_since: Option<Instant>,
}

impl Engine {
    /// Where the relay reports the writes it could not make.
    pub fn write_failures(&self) -> WriteFailures {
        self.failures.clone()
    }

    /// Creates again the streams that are missing or cannot store; returns whether any was.
    async fn restore_streams(&mut self) -> anyhow::Result<bool> {
        let failures = self.failures.take();
        let restored = self.restore(&failures).await;
        if restored.is_err() {
            self.failures.put_back(failures); // looked at again on the next check
        }
        restored
    }

    /// The server announced that a stream was deleted: it is looked at until the deletion
    /// is done ([`Self::settle_announced`]).
    pub(super) fn deletion_announced(&mut self, advisory: &async_nats::Message) {
        match serde_json::from_slice::<streams::Deletion>(&advisory.payload) {
            // This poller's own deletion (of a stream to create again) is done when announced.
            Ok(deletion)
                if self
                    .own_deletions
                    .get(&deletion.stream)
                    .is_some_and(|at| at.elapsed() < OWN_ANNOUNCEMENT) => {}
            Ok(deletion) => {
                tracing::warn!(stream = %deletion.stream, "a stream was deleted");
                let announced = Announced {
                    deleted_at: deletion.timestamp,
                    gone_since: None,
                };
                self.announced.insert(deletion.stream, announced);
            }
            Err(e) => tracing::warn!(
                subject = %advisory.subject, error = %e,
                "an unreadable stream deletion advisory; looking at the streams"
            ),
        }
    }

    /// Settles the announced deletions. The server announces a deletion before it is done,
    /// and removes the deleted stream's files last, so a stream of the same name created
    /// meanwhile (by this poller's checks, or anyone) loses its files from under it. Returns
    /// whether one is still under way (nothing is created until it is done: the stream gone
    /// for [`SETTLE`]), and the streams created while one was, to be deleted and, once gone
    /// for [`SETTLE`], created again. A stream created later is left alone.
    async fn settle_announced(&mut self) -> anyhow::Result<(bool, Vec<String>)> {
        let (mut under_way, mut suspect) = (false, Vec::new());
        let names: Vec<String> = self.announced.keys().cloned().collect();
        for name in names {
            let created = streams::created(&self.js, &name).await?;
            let Some(announced) = self.announced.get_mut(&name) else {
                continue;
            };
            let deleted_at = announced.deleted_at;
            let done = match created {
                // Still the deleted one.
                Some(created) if created <= deleted_at => false,
                Some(created) if created <= deleted_at + SETTLE => {
                    suspect.push(name.clone());
                    false
                }
                Some(_) => true,
                None => {
                    announced
                        .gone_since
                        .get_or_insert_with(Instant::now)
                        .elapsed()
                        >= SETTLE
                }
            };
            if done {
                self.announced.remove(&name);
            } else {
                under_way = true;
            }
        }
        Ok((under_way, suspect))
    }

    async fn restore(&mut self, failures: &Failures) -> anyhow::Result<bool> {
        let (under_way, suspect) = self.settle_announced().await?;
        // Deleted here, and created once gone for `SETTLE`: the deletion they were created
        // during may still be removing files.
        for name in &suspect {
            streams::delete(&self.js, name).await?;
            self.own_deletions.insert(name.clone(), Instant::now());
            if let Some(announced) = self.announced.get_mut(name) {
                announced.gone_since = Some(Instant::now());
            }
        }
        if under_way {
            self.failures.put_back(failures.clone()); // dealt with once the deletion is done
            return Ok(false);
        }
        let missing = streams::missing(&self.js).await?;
        let unstorable =
            streams::delete_unstorable(&self.js, &failures.unstorable, &mut self.own_deletions)
                .await;
        let events = pulse_proto::subject::EVENTS_STREAM;
        let events_lost = missing.iter().chain(&unstorable).any(|n| n == events);
        if !events_lost && self.restoring == Restoring::OutboxMarked {
            // The loss marked for is over: the next is marked for again.
            self.restoring = Restoring::Unfinished;
        }
        // A restore whose `ensure` got through without this poller hearing so (an answer lost,
        // NATS dropping meanwhile) finds nothing missing: its publishing again is still owed.
        if missing.is_empty() && unstorable.is_empty() && self.restoring == Restoring::Idle {
            return Ok(false);
        }
        tracing::warn!(
            ?missing,
            ?unstorable,
            "JetStream streams missing or unable to store; creating them and publishing \
             everything again"
        );
        // The outbox's events are marked to be relayed again into the events stream created
        // anew, before `ensure`: one that created it and then failed leaves it there, and the
        // next look (this poller's, or its successor's) would not find it missing. Between two
        // relay passes (`streams::PassGate`): none acknowledged by the lost stream marks an event
        // relayed after this. Once for a loss: an `ensure` that keeps failing finds the stream
        // missing at every look, and the outbox is read whole to mark it.
        if events_lost && self.restoring != Restoring::OutboxMarked {
            let _between_passes = self.relay_gate.hold().await;
            outbox::relay_again(&self.pool).await?;
            self.restoring = Restoring::OutboxMarked;
        } else if self.restoring == Restoring::Idle {
            self.restoring = Restoring::Unfinished;
        }
        streams::ensure(&self.js, &self.config).await?;
        self.restoring = Restoring::Idle;
        self.failures.restored();
        self.metrics.streams_restored();
        self.forget_published();
        self.fence.retain(|_| false);
        self.registry = None;
        Ok(true)
    }

    /// Looks at the streams when due (or when a write failed anywhere), then publishes
    /// everything again when due: after streams were created again, or a failed resync.
    pub(super) async fn heal(
        &mut self,
        link: &watch::Receiver<LinkState>,
        streams_due: &mut bool,
        resync_due: &mut bool,
    ) {
        *streams_due |= self.failures.pending();
        if *streams_due {
            *streams_due = self.check_streams(link, resync_due).await;
        }
        if *resync_due {
            *resync_due = self.resync(link, streams_due).await;
        }
    }

    /// [`Self::restore_streams`] unless NATS drops first; returns whether to look again (the
    /// look failed). Sets `resync_due` when the streams were created again.
    pub(super) async fn check_streams(
        &mut self,
        link: &watch::Receiver<LinkState>,
        resync_due: &mut bool,
    ) -> bool {
        match unless_dropped(link, self.restore_streams()).await {
            Some(Ok(restored)) => {
                if restored {
                    // Everything is to go out again into the streams created anew: at once,
                    // whatever resync failed before.
                    self.resync_pace.allow_now();
                    *resync_due = true;
                }
                // A deletion announced but not done yet: look again.
                !self.announced.is_empty()
            }
            Some(Err(e)) => {
                self.metrics.error(Stage::Streams);
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot check the JetStream streams"
                );
                true
            }
            None => true,
        }
    }
}
