//! Change notifications from PostgreSQL (`LISTEN pulse_changes`), folded into a set of dirty
//! tenants the engine drains.
//!
//! The set is bounded by the number of tenants, however many notifications arrive. Whenever the
//! listening connection is (re)established, notifications sent meanwhile may be lost, so the
//! feed asks for a full resync instead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pulse_common::backoff::Backoff;
use pulse_proto::{Subject, TenantId};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, Stage};

/// The notification channel the schema's triggers use.
pub const CHANNEL: &str = "pulse_changes";

/// What changed since the engine last looked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub alerts: BTreeSet<TenantId>,
    pub fleet: BTreeSet<TenantId>,
    /// Tenants were added or removed.
    pub tenants: bool,
    /// Notifications may have been lost: re-read everything.
    pub resync: bool,
    /// Subjects to publish again though unchanged: a late snapshot went out on them
    /// ([`crate::late`]).
    pub republish: BTreeSet<Subject>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        *self == Pending::default()
    }

    /// Records one notification payload, `<kind>:<tenant_id>`. Returns false for a payload
    /// outside the contract, which is ignored.
    pub fn record(&mut self, payload: &str) -> bool {
        let Some((kind, tenant)) = payload.split_once(':') else {
            return false;
        };
        let Ok(tenant) = TenantId::parse(tenant) else {
            return false;
        };
        match kind {
            "alerts" => self.alerts.insert(tenant),
            "fleet" => self.fleet.insert(tenant),
            "tenant" => {
                self.tenants = true;
                true
            }
            _ => return false,
        };
        true
    }
}

/// The engine's side of the feed, and the event relay's.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    /// Woken by `events:<tenant_id>`: the outbox has new rows. The relay reads every tenant's
    /// backlog, so which tenant does not matter.
    events: Arc<Notify>,
    /// Woken by `user:…`, and when notifications may have been lost: user changes may be
    /// queued in `user_changes`.
    users: Arc<Notify>,
}

impl ChangeFeed {
    /// Resolves when new events may be waiting in the outbox.
    pub async fn events_written(&self) {
        self.events.notified().await;
    }

    /// Asks for `subject`'s current state to be published again, though unchanged.
    pub fn republish(&self, subject: Subject) {
        self.update(|p| p.republish.insert(subject));
    }

    /// Resolves when user changes may be queued.
    pub async fn users_changed(&self) {
        self.users.notified().await;
    }

    /// Records one notification payload. Any role that may connect can send one: each is a
    /// hint to read what it names, never taken for the change itself.
    fn notified(&self, payload: &str) {
        match payload.split_once(':') {
            // What changed is read from `user_changes`, which only the database's own
            // functions write (migration `20261207000006`).
            Some(("user", _)) => self.users.notify_one(),
            Some(("events", tenant)) if TenantId::parse(tenant).is_ok() => {
                self.events.notify_one();
            }
            _ => self.update(|p| p.record(payload)),
        }
    }

    /// Notifications may have been lost: everyone re-reads.
    fn lost(&self) {
        self.events.notify_one();
        self.users.notify_one();
        self.update(|p| {
            p.resync = true;
            true
        });
    }

    /// Resolves when something is pending.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Takes everything pending.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    fn update(&self, f: impl FnOnce(&mut Pending) -> bool) {
        let changed = f(&mut self.pending.lock());
        if changed {
            self.wake.notify_one();
        }
    }
}

/// How long a quiet LISTEN connection has to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on a connection of its own to `database_url` until `stop` is cancelled,
/// reconnecting with backoff. A connection quiet for `check_after` is checked with a query; one
/// that does not answer is closed and replaced. (Not a pooled connection: the listener would
/// keep one of the pool's for good, and give a dead one back to it.)
pub async fn listen(
    database_url: String,
    feed: ChangeFeed,
    metrics: Metrics,
    check_after: Duration,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        let mut listener = match connect(&database_url).await {
            Ok(l) => l,
            Err(e) => {
                metrics.error(Stage::Listen);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot LISTEN for changes");
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        tracing::info!(channel = CHANNEL, "listening for database changes");
        // Anything sent before this point may have been missed.
        feed.lost();
        let listening_since = Instant::now();
        loop {
            // `try_recv` is cancel safe: a timeout loses no notification.
            let next = tokio::select! {
                n = tokio::time::timeout(check_after, listener.try_recv()) => n,
                () = stop.cancelled() => return,
            };
            let Ok(next) = next else {
                let check = sqlx::query("SELECT 1 AS listen_check").execute(&mut listener);
                if let Ok(Ok(_)) = tokio::time::timeout(CHECK_TIMEOUT, check).await {
                    continue;
                }
                metrics.error(Stage::Listen);
                tracing::warn!("LISTEN connection did not answer a check; replacing it");
                break;
            };
            match next {
                Ok(Some(n)) => {
                    metrics.notifications.inc();
                    feed.notified(n.payload());
                }
                Ok(None) => {
                    // Connected again by the loop above, which then tells of the loss: a
                    // reconnect inside the listener (its default) could be cut short by the
                    // check's timeout, and the check's query would then reconnect it without a
                    // word, the notifications of the gap lost.
                    metrics.error(Stage::Listen);
                    tracing::warn!("LISTEN connection lost; reconnecting and resyncing");
                    break;
                }
                Err(e) => {
                    metrics.error(Stage::Listen);
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
        // A connection that lasted is lost by chance: connected again at once. One dropped
        // soon after it was made (a proxy or server ending every session) waits, longer each
        // time: each reconnect has every tenant read again.
        if listening_since.elapsed() >= check_after {
            backoff.reset();
        } else {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for `signal`, failing the test if it has not come within a second.
    async fn within_a_second(signal: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(1), signal)
            .await
            .expect("no signal within a second");
    }

    #[test]
    fn records_contract_payloads_and_ignores_others() {
        let mut p = Pending::default();
        assert!(p.record("alerts:acme"));
        assert!(p.record("alerts:acme"));
        assert!(p.record("fleet:globex"));
        assert!(p.record("tenant:new-one"));
        assert!(!p.record("alerts:a.b"));
        assert!(!p.record("alerts:>"));
        assert!(!p.record("weather:acme"));
        assert!(!p.record("garbage"));
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.fleet.len(), 1);
        assert!(p.tenants);
        assert!(!p.resync);
    }

    #[tokio::test]
    async fn take_empties_and_wakes_once() {
        let feed = ChangeFeed::default();
        feed.update(|p| p.record("alerts:acme"));
        within_a_second(feed.changed()).await;
        let taken = feed.take();
        assert!(taken.alerts.contains(&TenantId::parse("acme").unwrap()));
        assert!(feed.take().is_empty());
    }

    #[tokio::test]
    async fn user_changes_wait_for_the_forwarder() {
        let feed = ChangeFeed::default();
        feed.notified("user:acme:42:role");
        within_a_second(feed.users_changed()).await;
        assert!(
            feed.take().is_empty(),
            "user changes are not fleet or alerts changes"
        );
    }

    #[tokio::test]
    async fn events_wake_the_relay_and_not_the_engine() {
        let feed = ChangeFeed::default();
        feed.notified("events:acme");
        within_a_second(feed.events_written()).await;
        assert!(feed.take().is_empty());
        feed.notified("events:a.b");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), feed.events_written())
                .await
                .is_err(),
            "a payload outside the contract must not wake the relay"
        );
    }
}
