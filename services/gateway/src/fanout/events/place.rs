//! Where an event topic's order starts: the newest stored event when the first subscriber
//! came, read again until the stream answers when that read failed, and what the topic's
//! subscribers are told when events may have been lost while nobody knew.

use std::sync::Arc;
use std::time::Duration;

use pulse_proto::ResetReason;

use super::Events;
use crate::fanout::topic::Topic;
use crate::history::HistoryError;
use crate::replay::EventLog;

impl Events {
    /// Records where an event subject's order starts, from the read of its newest stored
    /// event: as the head ([`EventLog::learn_head`]) while the first subscriber waits for its
    /// reply, as a floor ([`EventLog::learn_floor`]) once it was answered without a `seq`. A
    /// read that failed is made again until it answers ([`Events::retry_floor`]).
    pub(super) fn learn_head(
        &self,
        topic: &Arc<Topic>,
        result: Result<Option<u64>, HistoryError>,
        learn: fn(&mut EventLog, u64),
    ) {
        match result {
            Ok(head) => {
                let mut log = topic.log.lock();
                learn(&mut log, head.unwrap_or(0));
                self.tell_lost(topic, &mut log);
            }
            Err(e) => {
                tracing::debug!(subject = %topic.subject, error = %e, "no event history");
                self.retry_floor(topic.clone());
            }
        }
    }

    /// Reads the topic's newest stored event again, with backoff, until JetStream answers,
    /// an event was delivered here, or the topic is gone, and learns it as a floor: without a
    /// floor or head nothing would be read back for its subscribers (who got no `seq`), not
    /// after a NATS reconnect nor for a gap. Events an outage took while the topic had no place
    /// (`EventLog::lost_unplaced`) are not known, and cannot be read back: the subscribers get
    /// `events_reset` `unavailable` rather than silence, here with no `oldest`, or before the
    /// first event delivered when one gives the topic its place first
    /// ([`Topic::deliver_locked`]).
    pub(super) fn retry_floor(&self, topic: Arc<Topic>) {
        if !topic.begin_retry() {
            return; // one is running
        }
        let events = self.clone();
        tokio::spawn(async move {
            let _mark = RetryMark(topic.clone());
            let mut backoff = pulse_common::backoff::Backoff::new(
                Duration::from_millis(250),
                Duration::from_secs(5),
            );
            while topic.log.lock().fill_from().is_none() {
                if topic.is_stopped() {
                    return;
                }
                tokio::time::sleep(backoff.next_delay()).await;
                if let Ok(newest) = events.inner.history.latest(&topic.subject).await {
                    let mut log = topic.log.lock();
                    log.learn_floor(newest.unwrap_or(0));
                    events.tell_lost(&topic, &mut log);
                    tracing::debug!(subject = %topic.subject, "event history read after all");
                    break;
                }
            }
        });
    }

    /// Once the topic has a place: tells its subscribers of events that may have been lost
    /// while it had none, under the lock that placed it, so before any event after them.
    pub(super) fn tell_lost(&self, topic: &Topic, log: &mut EventLog) {
        if std::mem::take(&mut log.lost_unplaced) {
            let room = self.inner.limits.replay_room();
            let (reason, metrics) = (ResetReason::Unavailable, &self.inner.metrics);
            topic.reset_locked(log, None, reason, room, metrics);
        }
    }
}

/// Clears a topic's retry mark when its retry ends, however it ends.
struct RetryMark(Arc<Topic>);

impl Drop for RetryMark {
    fn drop(&mut self) {
        self.0.end_retry();
    }
}
