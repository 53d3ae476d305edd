//! The per-tenant publish limit: one token bucket per tenant (governor), so one tenant's
//! burst of events cannot take the publish path from the others.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pulse_proto::TenantId;

use crate::error::ApiError;

/// Events published per tenant, a token bucket each.
pub struct TenantLimiter {
    limiter: DefaultKeyedRateLimiter<TenantId>,
}

impl TenantLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Takes one publish for `tenant`, or says how many seconds to wait.
    pub fn check(&self, tenant: &TenantId) -> Result<(), ApiError> {
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
