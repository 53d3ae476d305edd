//! The `seq` of published messages: strictly increasing across every subject the poller
//! publishes, and across failovers.
//!
//! A `seq` is the publish time in microseconds since the Unix epoch, bumped by one when the
//! clock has not moved or went back. A poller that becomes active first raises its floor to the
//! newest `seq` already in the state stream, so a successor never publishes a lower one, even
//! with a clock behind its predecessor's. Values stay below 2^53, exact in JavaScript numbers.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct SeqClock {
    last: AtomicU64,
}

impl SeqClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `seq`, greater than every one returned before and than the floor.
    pub fn next(&self) -> u64 {
        let now = now_micros();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now.max(prev + 1);
            match self.last.compare_exchange_weak(
                prev,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(actual) => prev = actual,
            }
        }
    }

    /// The greatest `seq` returned so far, or the floor if that is greater: a snapshot numbered
    /// above it is none of this clock's.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// Ensures every later `seq` is greater than `floor`.
    pub fn raise_floor(&self, floor: u64) {
        self.last.fetch_max(floor, Ordering::Relaxed);
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_within_one_microsecond() {
        let clock = SeqClock::new();
        let mut prev = 0;
        for _ in 0..100_000 {
            let s = clock.next();
            assert!(s > prev);
            prev = s;
        }
    }

    #[test]
    fn a_floor_from_a_predecessor_wins_over_a_slow_clock() {
        let clock = SeqClock::new();
        let future = now_micros() + 3_600_000_000;
        clock.raise_floor(future);
        assert_eq!(clock.next(), future + 1);
        clock.raise_floor(5);
        assert_eq!(clock.next(), future + 2);
    }

    #[test]
    fn stays_exact_in_javascript_numbers() {
        assert!(SeqClock::new().next() < (1u64 << 53));
    }
}
