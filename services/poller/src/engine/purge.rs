//! Removing a deleted tenant's data from NATS.
//!
//! Deleting a tenant queues it in `tenant_purges`, in the deleting transaction (migration
//! `20261205000004`). Each time the active poller reads the tenant list, it purges each queued
//! tenant's subjects from `PULSE_STATE` (alerts, fleet, readings) and `PULSE_EVENTS`, and its
//! keys from the device registry, and only then removes the row: a purge NATS refused (down, a
//! permission missing) is done at the next read, whichever poller is active by then.
//!
//! A tenant created again with the same id before its purge loses what it published meanwhile
//! too; the engine forgets what it published for it, so its current state goes out again at
//! once, and its clients resuming events are told `events_reset`.

use pulse_proto::TenantId;
use time::OffsetDateTime;

use super::Engine;
use crate::metrics::Stage;

/// Most deletions purged per tenant-list read: a mass deletion is worked off over a few reads
/// rather than in one long cycle.
const PER_READ: i64 = 100;

impl Engine {
    /// Purges the deleted tenants queued in the database; returns those purged.
    pub(super) async fn purge_deleted(&mut self) -> Vec<TenantId> {
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
        let mut purged = Vec::new();
        for (id, deleted_at) in queued {
            // The database holds only ids that follow the id rule; one that did not would name
            // no subject, and nothing is purged for it.
            let tenant = TenantId::parse(&id).ok();
            if let Some(tenant) = &tenant
                && let Err(e) = crate::streams::purge_tenant(&self.js, tenant).await
            {
                self.metrics.error(Stage::Purge);
                tracing::warn!(
                    %tenant,
                    error = format!("{e:#}"),
                    "cannot purge a deleted tenant's data from NATS; trying again at the next poll"
                );
                continue;
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
            if let (Some(registry), Some(tenant)) = (self.registry.as_mut(), &tenant) {
                registry.forget(std::slice::from_ref(tenant));
            }
            self.metrics.tenants_purged.inc();
            tracing::info!(tenant = %id, "a deleted tenant's data purged from NATS");
            purged.extend(tenant);
        }
        purged
    }
}
