//! Late snapshots: an alerts or fleet snapshot that arrives on its subject after a newer one
//! went out there, from a deposed poller whose publishes were held in its client or a socket
//! until a partition healed.
//!
//! [`crate::fence`] keeps most of them out of the state stream, but not the first publish of a
//! subject in that poller's activation, which has nothing to expect: stored, it would stay the
//! subject's current value (what gateways and outside services read) until the subject changes
//! again, for good on a quiet tenant. So the active poller watches the subjects it publishes,
//! and publishes the current state of any subject that got a snapshot older than one before it
//! again at once ([`ChangeFeed::republish`]): newer than anything there, over whatever the
//! stream holds. A late snapshot of a tenant the poller purged lately (deleted meanwhile) is
//! purged again instead (`engine::late`).
//!
//! So is a snapshot numbered above anything this poller's clock gave out: not its own, so a
//! deposed poller's (its clock ahead of this one's by more than the handover took). Its `seq`
//! wins over everything older everywhere, and its content is what that poller read: stored, it
//! would stay a quiet tenant's value for good.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use pulse_proto::Subject;
use tokio_util::sync::CancellationToken;

use crate::changes::ChangeFeed;
use crate::seq::SeqClock;

/// The subjects watched: every tenant's alerts and fleet snapshots.
pub const WATCHED: [&str; 2] = ["pulse.v1.*.alerts", "pulse.v1.*.fleet"];

/// Subjects remembered at most; past them the memory starts again (a late snapshot right then
/// may go unnoticed).
const REMEMBERED: usize = 200_000;

/// Watches [`WATCHED`] until `stop`, telling `feed` of every subject that got a late snapshot,
/// once `seq` is raised past the newest seen there: what is published again is newer than it,
/// not late in turn.
pub async fn watch(
    nats: async_nats::Client,
    seq: Arc<SeqClock>,
    feed: ChangeFeed,
    stop: CancellationToken,
) {
    let mut subscriptions = Vec::new();
    for subject in WATCHED {
        match nats.subscribe(subject).await {
            Ok(s) => subscriptions.push(s),
            Err(e) => {
                tracing::warn!(subject, error = %e, "cannot watch for late snapshots");
                return;
            }
        }
    }
    let mut messages = futures::stream::select_all(subscriptions);
    let mut newest = Newest::default();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = messages.next() => message,
        };
        let Some(message) = message else { return };
        // A `seq` no client can hold (beyond 2^53) is no snapshot of ours to be newer than.
        let got = message.headers.as_ref().and_then(crate::streams::pulse_seq);
        let (Some(subject), Some(got)) = (Subject::parse(message.subject.as_str()), got) else {
            continue;
        };
        // Read before the snapshot is noted: this poller's own are never above it.
        let foreign = got > seq.last();
        if let Some(newest) = newest.late(&subject, got) {
            tracing::warn!(%subject, seq = got, newest, "a late snapshot arrived; publishing the current state again");
            seq.raise_floor(newest);
            feed.republish(subject);
        } else if foreign {
            tracing::warn!(%subject, seq = got, "a snapshot numbered above this poller's clock arrived; publishing the current state again, above it");
            seq.raise_floor(got);
            feed.republish(subject);
        }
    }
}

/// The newest `seq` seen per subject.
#[derive(Default)]
pub struct Newest(HashMap<Subject, u64>);

impl Newest {
    /// Notes `seq` on `subject`; the newest seen there before when it is newer.
    pub fn late(&mut self, subject: &Subject, seq: u64) -> Option<u64> {
        if let Some(newest) = self.0.get_mut(subject) {
            let late = (seq < *newest).then_some(*newest);
            *newest = (*newest).max(seq);
            return late;
        }
        if self.0.len() >= REMEMBERED {
            self.0.clear();
        }
        self.0.insert(subject.clone(), seq);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_snapshot_older_than_one_seen_before_is_late() {
        let tenant = pulse_proto::TenantId::parse("acme").unwrap();
        let (alerts, fleet) = (Subject::Alerts(tenant.clone()), Subject::Fleet(tenant));
        let mut newest = Newest::default();
        assert_eq!(newest.late(&alerts, 10), None, "nothing seen before");
        assert_eq!(
            newest.late(&alerts, 10),
            None,
            "the same one again (our own echo)"
        );
        assert_eq!(newest.late(&alerts, 12), None);
        assert_eq!(newest.late(&alerts, 11), Some(12));
        assert_eq!(newest.late(&fleet, 3), None, "each subject on its own");
        assert_eq!(newest.late(&alerts, 11), Some(12), "still older than 12");
    }
}
