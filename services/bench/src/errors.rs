//! Failures counted by kind, with the first few kept verbatim for the report.

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
        *self.counts.lock().entry(e.kind()).or_default() += 1;
        let mut samples = self.samples.lock();
        if samples.len() < SAMPLES {
            samples.push(e.to_string());
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
