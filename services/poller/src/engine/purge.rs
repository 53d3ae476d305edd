//! Removing a deleted tenant's data from NATS.
//!
//! Deleting a tenant queues it in `tenant_purges`, in the deleting transaction (migration
//! `20261205000004`; `TRUNCATE tenants` queues every tenant, `20261206000001`). Each time the active poller reads the tenant list, it purges each queued
//! tenant's keys from the device registry and its subjects from `PULSE_EVENTS` and
//! `PULSE_STATE` ([`crate::streams::purge_tenant`]), and only then removes the row. A purge NATS
//! does not do (down, a permission missing) stops the round and is tried again
//! [`RETRY_AFTER`] later, whichever poller is active by then; the cycle waits for at most one
//! such refusal.
//!
//! A relay pass under way may have read the tenant's events before the deletion: the purge
//! waits for it ([`crate::streams::PassGate`]), so none of them is stored after it.
//!
//! Purged tenants are remembered for an hour ([`Purged`]): a deposed poller's snapshot of one,
//! stored late, is purged again ([`super::late`]).
//!
//! A tenant created again with the same id before its purge loses what it published meanwhile
//! too; the engine forgets what it published for it, so its alerts and fleet go out again at
//! once (a device's reading with its next report), and its clients resuming events are told
//! `events_reset`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pulse_proto::TenantId;
use time::OffsetDateTime;

use super::Engine;
use crate::metrics::Stage;

/// Most deletions purged per tenant-list read: a mass deletion is worked off over a few reads
/// rather than in one long cycle.
const PER_READ: i64 = 100;
/// After a purge NATS did not do, the next is tried this much later.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a purged tenant is remembered: a deposed poller's publish held by a partition
/// arrives within that, as a rule (see [`super::late`]).
const REMEMBERED_FOR: Duration = Duration::from_secs(3600);
/// Purged tenants remembered at most; past them the oldest are forgotten.
const REMEMBERED_AT_MOST: usize = 10_000;

/// The tenants this poller purged lately, and when.
#[derive(Default)]
pub(super) struct Purged(HashMap<TenantId, Instant>);

impl Purged {
    fn note(&mut self, tenant: TenantId) {
        if self.0.len() >= REMEMBERED_AT_MOST {
            self.0.retain(|_, at| at.elapsed() < REMEMBERED_FOR);
            while self.0.len() >= REMEMBERED_AT_MOST {
                let oldest = self
                    .0
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(t, _)| t.clone());
                oldest.map(|t| self.0.remove(&t));
            }
        }
        self.0.insert(tenant, Instant::now());
    }

    /// Whether `tenant` was purged within [`REMEMBERED_FOR`].
    pub(super) fn lately(&self, tenant: &TenantId) -> bool {
        self.0
            .get(tenant)
            .is_some_and(|at| at.elapsed() < REMEMBERED_FOR)
    }
}

impl Engine {
    /// What the relay holds for each pass, and the engine while it purges deleted tenants.
    pub fn relay_gate(&self) -> crate::streams::PassGate {
        self.relay_gate.clone()
    }

    /// Purges the deleted tenants queued in the database; returns those it purged or began to
    /// purge, whose published state is to be forgotten.
    pub(super) async fn purge_deleted(&mut self) -> Vec<TenantId> {
        if self
            .purges_paused_until
            .is_some_and(|at| Instant::now() < at)
        {
            return Vec::new();
        }
        let queued: Vec<(String, OffsetDateTime)> = match sqlx::query_as(
            "SELECT tenant_id, deleted_at FROM tenant_purges ORDER BY deleted_at LIMIT $1",
        )
        .bind(PER_READ)
        .fetch_all(&self.pool)
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.error(Stage::Purge);
                tracing::warn!(error = %e, "cannot read the deleted tenants to purge");
                return Vec::new();
            }
        };
        // Taken once for them all, after the relay pass under way, which may have read their
        // events before the deletion and still be sending them; a pass after it finds none.
        let _relay_paused = if queued.is_empty() {
            None
        } else {
            Some(self.relay_gate.hold().await)
        };
        let mut touched = Vec::new();
        for (id, deleted_at) in queued {
            // The database holds only ids that follow the id rule; one that did not would name
            // no subject, and nothing is purged for it.
            if let Ok(tenant) = TenantId::parse(&id) {
                let purged = crate::streams::purge_tenant(&self.js, &tenant).await;
                // Even a purge that stopped midway may have removed what the engine and the
                // registry remember of the tenant: both forget it.
                if let Some(registry) = self.registry.as_mut() {
                    registry.forget(&tenant);
                }
                touched.push(tenant.clone());
                self.purged.note(tenant.clone());
                if let Err(e) = purged {
                    self.metrics.error(Stage::Purge);
                    self.purges_paused_until = Some(Instant::now() + RETRY_AFTER);
                    tracing::warn!(
                        %tenant,
                        error = format!("{e:#}"),
                        "cannot purge a deleted tenant's data from NATS; trying again in {RETRY_AFTER:?}"
                    );
                    break;
                }
            }
            // Done, unless it was deleted again meanwhile: that newer deletion waits its turn.
            let done =
                sqlx::query("DELETE FROM tenant_purges WHERE tenant_id = $1 AND deleted_at = $2")
                    .bind(&id)
                    .bind(deleted_at)
                    .execute(&self.pool)
                    .await;
            if let Err(e) = done {
                self.metrics.error(Stage::Purge);
                tracing::warn!(tenant = %id, error = %e, "cannot mark a tenant purged");
            }
            self.metrics.tenants_purged.inc();
            tracing::info!(tenant = %id, "a deleted tenant's data purged from NATS");
        }
        touched
    }
}
