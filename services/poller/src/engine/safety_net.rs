//! The safety-net poll, every `PULSE_POLL_SECONDS`: it reads the tenants and their alerts,
//! and the devices only of tenants whose fleet message may have changed since their last read
//! ([`FleetWatch`]), told apart by one aggregate row per tenant
//! ([`crate::fleet::read_fingerprints`]). A quiet fleet of any size then costs one aggregate
//! and no device row.

use std::time::Instant;

use pulse_proto::TenantId;

use super::{CycleError, Engine};
use crate::fleet;
use crate::metrics::Query;

/// What the safety net knows of a tenant's devices from its last fleet read, so that it reads
/// them again only when the fleet message may have changed: a device added, removed, moved,
/// with another battery or seen again after a gap (`content`), a status due to change with
/// time (`transition`), or, once `PULSE_FLEET_REFRESH_SECONDS` passed since the last publish,
/// newer `last_seen_at` values (`seen`).
pub(super) struct FleetWatch {
    content: String,
    /// What [`fleet::Fingerprint::seen`] was when the fleet last went out.
    seen: String,
    /// The database clock's instant at which a device's status changes by time alone.
    transition: Option<time::OffsetDateTime>,
}

impl Engine {
    /// The safety-net poll: tenants, every tenant's alerts, and the fleet of each tenant whose
    /// fleet message may have changed since its last read (`FleetWatch`). The devices of the
    /// others are not read: one aggregate row per tenant tells which ones to read.
    pub async fn safety_net(&mut self) -> Result<(), CycleError> {
        self.load_tenants().await?;
        let all: Vec<TenantId> = self.tenants.iter().cloned().collect();
        self.refresh_alerts(&all).await?;
        let started = Instant::now();
        let thresholds = self.config.applied().thresholds;
        let (now, prints) = fleet::read_fingerprints(&self.pool, &all, thresholds).await?;
        self.metrics
            .observe_query(Query::FleetFingerprints, started);
        let refresh = self.config.fleet_refresh;
        let no_devices = fleet::Fingerprint::default();
        let due: Vec<TenantId> = all
            .into_iter()
            .filter(|tenant| {
                let (Some(watch), Some(published)) = (
                    self.fleet_watch.get(tenant),
                    self.fleet_published.get(tenant),
                ) else {
                    return true;
                };
                let print = prints.get(tenant).unwrap_or(&no_devices);
                watch.content != print.content
                    || watch.transition.is_some_and(|at| now >= at)
                    || (watch.seen != print.seen && published.at.elapsed() >= refresh)
            })
            .collect();
        self.read_fleet(&due, Some(prints)).await
    }

    /// Watches `tenant` from its fleet read with `print` (see [`FleetWatch`]); without one,
    /// the next safety-net poll reads it. While the fleet is held back with only newer
    /// `last_seen_at` values (`seen_held`), what was seen when it last went out is kept.
    pub(super) fn watch(
        &mut self,
        tenant: &TenantId,
        print: Option<fleet::Fingerprint>,
        transition: Option<time::OffsetDateTime>,
        seen_held: bool,
    ) {
        let Some(print) = print else {
            self.fleet_watch.remove(tenant);
            return;
        };
        let seen = match self.fleet_watch.get(tenant) {
            Some(watch) if seen_held => watch.seen.clone(),
            None if seen_held => String::new(),
            _ => print.seen,
        };
        let watch = FleetWatch {
            content: print.content,
            seen,
            transition,
        };
        self.fleet_watch.insert(tenant.clone(), watch);
    }
}
