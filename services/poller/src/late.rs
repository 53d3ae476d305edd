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
//! stream holds.

use std::collections::HashMap;

use futures::StreamExt as _;
use pulse_proto::{Subject, headers};
use tokio_util::sync::CancellationToken;

use crate::changes::ChangeFeed;

/// The subjects watched: every tenant's alerts and fleet snapshots.
pub const WATCHED: [&str; 2] = ["pulse.v1.*.alerts", "pulse.v1.*.fleet"];

/// Subjects remembered at most; past them the memory starts again (a late snapshot right then
/// may go unnoticed).
const REMEMBERED: usize = 200_000;

/// Watches [`WATCHED`] until `stop`, telling `feed` of every subject that got a late snapshot.
pub async fn watch(nats: async_nats::Client, feed: ChangeFeed, stop: CancellationToken) {
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
        let seq = message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::SEQ))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        let (Some(subject), Some(seq)) = (Subject::parse(message.subject.as_str()), seq) else {
            continue;
        };
        if newest.late(&subject, seq) {
            tracing::warn!(%subject, seq, "a late snapshot arrived; publishing the current state again");
            feed.republish(subject);
        }
    }
}

/// The newest `seq` seen per subject.
#[derive(Default)]
pub struct Newest(HashMap<Subject, u64>);

impl Newest {
    /// Notes `seq` on `subject`; true when a newer one was seen there before.
    pub fn late(&mut self, subject: &Subject, seq: u64) -> bool {
        if let Some(newest) = self.0.get_mut(subject) {
            let late = seq < *newest;
            *newest = (*newest).max(seq);
            return late;
        }
        if self.0.len() >= REMEMBERED {
            self.0.clear();
        }
        self.0.insert(subject.clone(), seq);
        false
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
        assert!(!newest.late(&alerts, 10), "nothing seen before");
        assert!(
            !newest.late(&alerts, 10),
            "the same one again (our own echo)"
        );
        assert!(!newest.late(&alerts, 12));
        assert!(newest.late(&alerts, 11));
        assert!(!newest.late(&fleet, 3), "each subject on its own");
        assert!(newest.late(&alerts, 11), "still older than 12");
    }
}
