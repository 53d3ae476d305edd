//! Per-connection limit on client messages: governor's rate limiter, one per connection. Its
//! GCRA admits what a token bucket of `burst` refilled at `rate` per second would, with one
//! atomic word of state.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// `rate` client messages per second, at most `burst` saved up; each message takes one.
pub struct MessageLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl MessageLimit {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock> MessageLimit<C> {
    fn with_clock(rate: u32, burst: u32, clock: C) -> Self {
        // The settings are validated to be at least 1; 0 would mean "never", not "no limit".
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
        }
    }

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
        let limit = MessageLimit::with_clock(50, 100, clock.clone());
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
    }
}
