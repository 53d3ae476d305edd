//! The per-tenant publish limit, so one tenant's burst of events cannot take the publish path
//! from the others: `PULSE_EVENTS_PER_SECOND` with bursts of `PULSE_EVENTS_BURST`, counted by
//! every instance together ([`crate::shared_limits`]).

use pulse_proto::TenantId;
use sqlx::PgPool;

use crate::error::ApiError;
use crate::shared_limits::{Key, Limit, Rate};

/// Events published per tenant, a token bucket each.
pub struct TenantLimiter {
    limit: Limit<TenantId>,
}

impl TenantLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            limit: Limit::new(Rate::per_second(per_second, burst)),
        }
    }

    /// Takes one publish for `tenant`, here and then with every instance, or says how many
    /// seconds to wait.
    pub async fn check(&self, pool: &PgPool, tenant: &TenantId) -> Result<(), ApiError> {
        // Tenants that went quiet are forgotten now and then, so the map stays small.
        if self.limit.len() > 10_000 {
            self.limit.retain_recent();
        }
        self.limit.check(pool, tenant, Key::Publish(tenant)).await
    }
}
