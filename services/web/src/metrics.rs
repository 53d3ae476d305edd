//! The web service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use pulse_common::startup::{latency_histograms, register};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RouteLabel, Counter>,
    pub request_seconds: Family<RouteLabel, Histogram>,
    pub login_failures: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("pulse_web");
        Metrics {
            requests: register(
                r,
                "requests",
                "HTTP requests by route and status",
                Family::default(),
            ),
            request_seconds: register(
                r,
                "request_seconds",
                "HTTP request latency by route and status",
                latency_histograms(),
            ),
            login_failures: register(r, "login_failures", "Failed logins", Counter::default()),
        }
    }
}
