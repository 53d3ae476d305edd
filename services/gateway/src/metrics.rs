//! The gateway's Prometheus metrics, one registry per instance.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub connections: Gauge,
    pub tenant_connections: Family<TenantLabel, Gauge>,
    pub closes: Family<CodeLabel, Counter>,
    pub subscriptions: Gauge,
    pub nats_subscriptions: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    pub conflated: Counter,
    pub slow_consumer_closes: Counter,
    pub nats_slow_consumer: Counter,
    pub auth_failures: Family<CodeLabel, Counter>,
    pub client_errors: Family<CodeLabel, Counter>,
    pub fanout_latency: Histogram,
    pub events_delivered: Counter,
    pub events_duplicate: Counter,
    pub events_filled: Counter,
    pub events_replayed: Counter,
    pub event_resets: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            connections: Gauge::default(),
            tenant_connections: Family::default(),
            closes: Family::default(),
            subscriptions: Gauge::default(),
            nats_subscriptions: Gauge::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            conflated: Counter::default(),
            slow_consumer_closes: Counter::default(),
            nats_slow_consumer: Counter::default(),
            auth_failures: Family::default(),
            client_errors: Family::default(),
            fanout_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            events_delivered: Counter::default(),
            events_duplicate: Counter::default(),
            events_filled: Counter::default(),
            events_replayed: Counter::default(),
            event_resets: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("pulse_gateway");
        r.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "tenant_connections",
            "Open WebSocket connections per tenant",
            m.tenant_connections.clone(),
        );
        r.register(
            "closes",
            "Connections closed, by close code",
            m.closes.clone(),
        );
        r.register(
            "subscriptions",
            "Client subscriptions across all connections",
            m.subscriptions.clone(),
        );
        r.register(
            "nats_subscriptions",
            "NATS subscriptions held (one per subject in use)",
            m.nats_subscriptions.clone(),
        );
        r.register(
            "messages_in",
            "Messages received from NATS",
            m.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Frames written to clients",
            m.messages_out.clone(),
        );
        r.register(
            "bytes_out",
            "Payload bytes written to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "conflated",
            "Snapshot frames replaced by a newer one before a slow client read them",
            m.conflated.clone(),
        );
        r.register(
            "slow_consumer_closes",
            "Connections closed with 4008 for falling behind on events",
            m.slow_consumer_closes.clone(),
        );
        r.register(
            "nats_slow_consumer",
            "Messages NATS dropped because a subscription's buffer was full",
            m.nats_slow_consumer.clone(),
        );
        r.register(
            "auth_failures",
            "Refused connections, by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "client_errors",
            "Error replies sent to clients, by code",
            m.client_errors.clone(),
        );
        r.register(
            "fanout_latency_seconds",
            "Time from NATS receive to the frame written to the client's socket",
            m.fanout_latency.clone(),
        );
        r.register(
            "events_delivered",
            "Events delivered in seq order to this instance's subscribers of a topic",
            m.events_delivered.clone(),
        );
        r.register(
            "events_duplicate",
            "Events received again (a relay repeated after a failover, or read back before they arrived live) and dropped",
            m.events_duplicate.clone(),
        );
        r.register(
            "events_filled",
            "Events missing on the live path and read back from the events stream",
            m.events_filled.clone(),
        );
        r.register(
            "events_replayed",
            "Events replayed to clients that subscribed with since",
            m.events_replayed.clone(),
        );
        r.register(
            "event_resets",
            "events_reset messages sent: events a client asked for could not be delivered",
            m.event_resets.clone(),
        );
        m
    }

    pub fn closed(&self, code: u16) {
        self.closes
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}
