//! The web service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            login_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("pulse_web");
        r.register(
            "requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "HTTP request latency by route and status",
            m.request_seconds.clone(),
        );
        r.register("login_failures", "Failed logins", m.login_failures.clone());
        m
    }
}
