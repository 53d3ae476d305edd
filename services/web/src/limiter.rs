//! Counting failed logins per key (email, client address) in fixed one-minute windows.
//! Memory is bounded: expired windows are swept when the table grows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const WINDOW: Duration = Duration::from_secs(60);
const SWEEP_ABOVE: usize = 10_000;

pub struct FailureLimiter {
    max: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailureLimiter {
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max: max_per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` when `key` used up its failures for this window.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let windows = self.windows.lock();
        match windows.get(key) {
            Some((start, n)) if start.elapsed() < WINDOW && *n >= self.max => {
                Err(WINDOW.saturating_sub(start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, key: &str) {
        let mut windows = self.windows.lock();
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let entry = windows.entry(key.to_owned()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, key: &str) {
        self.windows.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_key() {
        let l = FailureLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
            l.failed("a");
        }
        let wait = l.check("a").unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(l.check("b").is_ok());
        l.succeeded("a");
        assert!(l.check("a").is_ok());
    }
}
