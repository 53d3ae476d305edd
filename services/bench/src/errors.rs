//! Failures counted by kind, with the first few different ones kept verbatim for the report.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::client::ClientError;

const SAMPLES: usize = 10;

#[derive(Default)]
pub struct Errors {
    counts: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Errors {
    pub fn record(&self, e: &ClientError) {
        self.record_as(e, "");
    }

    /// Counts `e` under its kind with `prefix` (`lost_` for a connection an events client
    /// resumed elsewhere).
    pub fn record_as(&self, e: &ClientError, prefix: &str) {
        *self
            .counts
            .lock()
            .entry(format!("{prefix}{}", e.kind()))
            .or_default() += 1;
        let sample = format!("{prefix}{e}");
        let mut samples = self.samples.lock();
        if samples.len() < SAMPLES && !samples.contains(&sample) {
            samples.push(sample);
        }
        tracing::debug!(error = %e, "client error");
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().clone()
    }

    pub fn samples(&self) -> Vec<String> {
        self.samples.lock().clone()
    }
}
