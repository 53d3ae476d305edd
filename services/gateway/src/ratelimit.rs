//! Per-connection limit on client messages: a token bucket.

use std::time::Instant;

/// `rate` tokens per second, at most `burst` saved up; each client message takes one.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(50, 100);
        b.last = start;
        let taken = (0..150).filter(|_| b.try_take_at(start)).count();
        assert_eq!(taken, 100);
        // One second later, 50 more.
        let later = start + Duration::from_secs(1);
        let taken = (0..100).filter(|_| b.try_take_at(later)).count();
        assert_eq!(taken, 50);
        // Savings are capped at the burst.
        let much_later = later + Duration::from_secs(3600);
        let taken = (0..1000).filter(|_| b.try_take_at(much_later)).count();
        assert_eq!(taken, 100);
    }
}
