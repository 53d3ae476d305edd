//! Latency recording: HdrHistograms in microseconds, shared by many connection tasks (sharded
//! locks, so tasks on different threads rarely meet), summarised as percentiles, and kept as
//! (value, count) pairs in reports so shards can be merged exactly.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Highest latency recorded: one hour, in microseconds; larger values are clamped.
const MAX_US: u64 = 3_600_000_000;
const SHARDS: usize = 16;

fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid")
}

/// Keeps what it holds on its own cache lines, so shards used from different threads do not
/// slow each other down.
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// A histogram many tasks record into.
pub struct Recorder {
    shards: Vec<Padded<Mutex<Histogram<u64>>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(histogram())))
                .collect(),
        }
    }

    /// Records `us` microseconds for the task numbered `who`.
    pub fn record(&self, who: u64, us: u64) {
        let mut h = self.shards[(who as usize) % SHARDS].0.lock();
        h.saturating_record(us.clamp(1, MAX_US));
    }

    /// Everything recorded so far.
    pub fn summary(&self) -> Latency {
        let mut all = histogram();
        for shard in &self.shards {
            // Same bounds everywhere: adding cannot fail.
            let _ = all.add(&*shard.0.lock());
        }
        Latency::of(&all)
    }
}

/// A count many tasks add to, sharded like [`Recorder`].
pub struct Counter {
    shards: Vec<Padded<std::sync::atomic::AtomicU64>>,
}

impl Default for Counter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Padded(std::sync::atomic::AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl Counter {
    /// Adds `n` for the task numbered `who`.
    pub fn add(&self, who: u64, n: u64) {
        self.shards[(who as usize) % SHARDS]
            .0
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// Latency percentiles in milliseconds, plus the histogram as (µs, count) pairs for merging.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Recorded values as (microseconds, count), for `pulse-bench merge`.
    pub buckets: Vec<(u64, u64)>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
            buckets: h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Both latencies' samples together.
    pub fn merge(&self, other: &Latency) -> Latency {
        let mut h = histogram();
        for (us, count) in self.buckets.iter().chain(&other.buckets) {
            let _ = h.record_n((*us).clamp(1, MAX_US), *count);
        }
        Latency::of(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let a = Recorder::new();
        for us in 1..=1000u64 {
            a.record(us, us * 1000);
        }
        let la = a.summary();
        assert_eq!(la.count, 1000);
        assert!((la.p50_ms - 500.0).abs() < 1.0, "{}", la.p50_ms);
        assert!((la.max_ms - 1000.0).abs() < 1.0);
        let b = Recorder::new();
        b.record(0, 2_000_000);
        let merged = la.merge(&b.summary());
        assert_eq!(merged.count, 1001);
        assert!((merged.max_ms - 2000.0).abs() < 2.0);
        assert_eq!(Latency::default().merge(&Latency::default()).count, 0);
    }
}
