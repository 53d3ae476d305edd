//! Per-connection limit on client messages: governor's rate limiter, one per connection. Its
//! GCRA admits what a token bucket of `burst` refilled at `rate` per second would, with one
//! atomic word of state.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// `rate` client messages per second with `burst` saved up, as every connection of an instance
/// gets it: the quota worked out once, and one clock, calibrated when the instance starts
/// rather than by its first connection.
#[derive(Debug, Clone)]
pub struct MessageQuota<C: Clock = DefaultClock> {
    quota: Quota,
    clock: C,
}

impl MessageQuota {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> MessageQuota<C> {
    fn with_clock(rate: u32, burst: u32, clock: C) -> Self {
        // The settings are validated to be at least 1; 0 would mean "never", not "no limit".
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            quota: Quota::per_second(rate).allow_burst(burst),
            clock,
        }
    }

    /// A new connection's own limit, with its whole burst available.
    pub fn limit(&self) -> MessageLimit<C> {
        MessageLimit {
            limiter: RateLimiter::direct_with_clock(self.quota, self.clock.clone()),
        }
    }
}

/// One connection's limit; each client message takes a place.
pub struct MessageLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> MessageLimit<C> {
    /// Takes a message's place if one is free.
    pub fn try_take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn burst_then_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let quota = MessageQuota::with_clock(50, 100, clock.clone());
        let limit = quota.limit();
        let taken = (0..150).filter(|_| limit.try_take()).count();
        assert_eq!(taken, 100);
        // One second later, 50 more.
        clock.advance(Duration::from_secs(1));
        let taken = (0..100).filter(|_| limit.try_take()).count();
        assert_eq!(taken, 50);
        // Savings are capped at the burst.
        clock.advance(Duration::from_secs(3600));
        let taken = (0..1000).filter(|_| limit.try_take()).count();
        assert_eq!(taken, 100);
        // Each connection has a limit of its own.
        let taken = (0..150).filter(|_| quota.limit().try_take()).count();
        assert_eq!(taken, 150);
    }
}
