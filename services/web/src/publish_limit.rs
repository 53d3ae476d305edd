//! The per-tenant publish limit, so one tenant's burst of events cannot take the publish path
//! from the others: a token bucket per tenant on each instance (governor), which answers first,
//! then the same bucket counted by every instance together ([`crate::shared_limits`]), so that
//! behind a load balancer a tenant gets `PULSE_EVENTS_PER_SECOND` in all, not per instance.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pulse_proto::TenantId;
use sqlx::PgPool;

use crate::error::ApiError;
use crate::shared_limits::{self, Key, Rate};

/// Events published per tenant, a token bucket each.
pub struct TenantLimiter {
    limiter: DefaultKeyedRateLimiter<TenantId>,
    rate: Rate,
}

impl TenantLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            rate: Rate::per_second(rate.get(), burst.get()),
        }
    }

    /// Takes one publish for `tenant`, here and then with every instance, or says how many
    /// seconds to wait.
    pub async fn check(&self, pool: &PgPool, tenant: &TenantId) -> Result<(), ApiError> {
        self.check_here(tenant)?;
        match shared_limits::take(pool, Key::Publish(tenant), self.rate).await? {
            None => Ok(()),
            Some(retry_after) => Err(ApiError::TooManyRequests { retry_after }),
        }
    }

    /// [`TenantLimiter::check`] as this instance counts it.
    fn check_here(&self, tenant: &TenantId) -> Result<(), ApiError> {
        // Tenants that went quiet are forgotten now and then, so the map stays small.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(tenant).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}
