//! Change notifications from PostgreSQL (`LISTEN pulse_changes`), folded into a set of dirty
//! tenants the engine drains.
//!
//! The set is bounded by the number of tenants, however many notifications arrive. Whenever the
//! listening connection is (re)established, notifications sent meanwhile may be lost, so the
//! feed asks for a full resync instead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_common::backoff::Backoff;
use pulse_proto::TenantId;
use sqlx::PgPool;
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
}

impl ChangeFeed {
    /// Resolves when new events may be waiting in the outbox.
    pub async fn events_written(&self) {
        self.events.notified().await;
    }

    /// Records one notification payload.
    fn notified(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("events", tenant)) if TenantId::parse(tenant).is_ok() => {
                self.events.notify_one();
            }
            _ => self.update(|p| p.record(payload)),
        }
    }

    /// Notifications may have been lost: everyone re-reads.
    fn lost(&self) {
        self.events.notify_one();
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

/// Listens until `stop` is cancelled, reconnecting with backoff.
pub async fn listen(pool: PgPool, feed: ChangeFeed, metrics: Metrics, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        let mut listener = match connect(&pool).await {
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
        backoff.reset();
        tracing::info!(channel = CHANNEL, "listening for database changes");
        // Anything sent before this point may have been missed.
        feed.lost();
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                () = stop.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => {
                    metrics.notifications.inc();
                    feed.notified(n.payload());
                }
                Ok(None) => {
                    metrics.error(Stage::Listen);
                    tracing::warn!("LISTEN connection lost; reconnecting and resyncing");
                    feed.lost();
                }
                Err(e) => {
                    metrics.error(Stage::Listen);
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        tokio::time::timeout(Duration::from_secs(1), feed.changed())
            .await
            .unwrap();
        let taken = feed.take();
        assert!(taken.alerts.contains(&TenantId::parse("acme").unwrap()));
        assert!(feed.take().is_empty());
    }

    #[tokio::test]
    async fn events_wake_the_relay_and_not_the_engine() {
        let feed = ChangeFeed::default();
        feed.notified("events:acme");
        tokio::time::timeout(Duration::from_secs(1), feed.events_written())
            .await
            .unwrap();
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
