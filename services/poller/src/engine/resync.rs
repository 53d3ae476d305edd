//! Full resyncs: everything read and published again, after a reconnect, a lost LISTEN, a
//! failed refresh or streams created again. One that fails is tried again with backoff: the
//! engine asks for it at every telemetry tick and change, and while a failure lasts that
//! leaves the link up (the poller's role refused a read, JetStream refusing writes), each would
//! read every tenant's alerts and publish every snapshot again, many times a second.

use std::time::{Duration, Instant};

use pulse_common::backoff::Backoff;
use pulse_common::nats::LinkState;
use tokio::sync::watch;

use super::{Engine, on_link};

/// When the next full resync may run.
#[derive(Debug)]
pub(super) struct Pace {
    backoff: Backoff,
    not_before: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            not_before: None,
        }
    }
}

impl Pace {
    fn ready(&self) -> bool {
        self.not_before.is_none_or(|t| Instant::now() >= t)
    }

    fn record(&mut self, done: bool) {
        if done {
            self.allow_now();
        } else {
            self.not_before = Some(Instant::now() + self.backoff.next_delay());
        }
    }

    /// A new reason to resync (NATS reconnected, LISTEN back, streams created again): the next
    /// may run at once.
    pub(super) fn allow_now(&mut self) {
        self.backoff.reset();
        self.not_before = None;
    }
}

impl Engine {
    /// Publishes everything once, before the loop, unless NATS drops meanwhile; whatever did
    /// not finish, the loop's first tick does again.
    pub async fn first_sync(&mut self, link: &watch::Receiver<LinkState>) {
        let synced = on_link(link, self.full_sync()).await;
        self.resync_due = !self.report("first sync", synced);
        let read = on_link(link, self.poll_telemetry()).await;
        self.report("first telemetry read", read);
    }

    /// A full resync, unless the last one failed and its wait is not over; returns whether one
    /// is still due. One that fails now also has the streams looked at.
    pub(super) async fn resync(
        &mut self,
        link: &watch::Receiver<LinkState>,
        streams_due: &mut bool,
    ) -> bool {
        if !self.resync_pace.ready() {
            return true;
        }
        let r = on_link(link, self.full_sync()).await;
        let done = self.report("resync", r);
        self.resync_pace.record(done);
        *streams_due |= !done;
        !done
    }
}
