//! Late snapshots ([`crate::late`]) met by the engine: the subject of a tenant it publishes is
//! published again, newer; the subject of a tenant it purged lately (a deposed poller's
//! publish of a tenant deleted meanwhile, stored after the purge) is purged again, so that
//! nothing of the deleted tenant is shown to one created again with the same id. Other
//! subjects are not ours (another deployment, a tool) and are left alone.

use pulse_proto::Subject;

use super::Engine;
use crate::changes::Pending;
use crate::metrics::Stage;

impl Engine {
    /// Forgets what was published on the subjects `pending` asks to publish again (a late
    /// snapshot went out there), and adds their tenants to the alerts and fleet to refresh, so
    /// that the current state goes out again newer than it; purges the tenants purged lately
    /// again.
    pub(super) async fn forget_late(&mut self, pending: &mut Pending) {
        let mut gone = Vec::new();
        for subject in std::mem::take(&mut pending.republish) {
            if !self.tenants.contains(subject.tenant()) {
                if self.purged.lately(subject.tenant()) && !gone.contains(subject.tenant()) {
                    gone.push(subject.tenant().clone());
                }
                continue;
            }
            match subject {
                Subject::Alerts(tenant) => {
                    self.alerts_published.remove(&tenant);
                    pending.alerts.insert(tenant);
                }
                Subject::Fleet(tenant) => {
                    self.fleet_published.remove(&tenant);
                    pending.fleet.insert(tenant);
                }
                Subject::Telemetry(..) | Subject::Events(..) => {}
            }
        }
        for tenant in gone {
            tracing::warn!(%tenant, "a late snapshot of a tenant purged lately; purging it again");
            if let Err(e) = crate::streams::purge_tenant(&self.js, &tenant).await {
                self.metrics.error(Stage::Purge);
                tracing::warn!(%tenant, error = format!("{e:#}"), "cannot purge it again");
            }
        }
    }
}
