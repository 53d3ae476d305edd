//! The gateway's Prometheus metrics, one registry per instance.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pulse_common::startup::register;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// A JetStream stream the gateway reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
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
    /// Events read back from the events stream for clients resuming with `since`.
    pub events_read_for_replay: Counter,
    /// Reads (direct gets) of the events stream for event history, whatever they found.
    pub event_history_gets: Counter,
    pub event_resets: Counter,
    pub event_catch_ups: Gauge,
    /// Bytes of replayed events (and events read back after a gap) queued for clients and not
    /// written yet.
    pub replay_bytes_waiting: Gauge,
    /// Bytes of recent events the event subjects keep for resuming clients, together.
    pub events_cache_bytes: Gauge,
    pub snapshot_retries: Gauge,
    /// Snapshots the periodic check found newer than what had arrived live: lost on their way
    /// here, or (rarely) read just before their live copy came.
    pub snapshots_recovered: Counter,
    /// Event topics the periodic check found behind the events stream and standing still for a
    /// second: their newest events lost on their way here, and had read back.
    pub event_topics_behind: Counter,
    /// 1 while a stream answers reads, 0 while it does not (see [`crate::streams`]).
    pub stream_readable: Family<StreamLabel, Gauge>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("pulse_gateway");
        Metrics {
            connections: register(
                r,
                "connections",
                "Open WebSocket connections",
                Gauge::default(),
            ),
            tenant_connections: register(
                r,
                "tenant_connections",
                "Open WebSocket connections per tenant",
                Family::default(),
            ),
            closes: register(
                r,
                "closes",
                "Connections closed, by close code",
                Family::default(),
            ),
            subscriptions: register(
                r,
                "subscriptions",
                "Client subscriptions across all connections",
                Gauge::default(),
            ),
            nats_subscriptions: register(
                r,
                "nats_subscriptions",
                "NATS subscriptions held (one per subject in use)",
                Gauge::default(),
            ),
            messages_in: register(
                r,
                "messages_in",
                "Messages received from NATS",
                Counter::default(),
            ),
            messages_out: register(
                r,
                "messages_out",
                "Frames written to clients",
                Counter::default(),
            ),
            bytes_out: register(
                r,
                "bytes_out",
                "Payload bytes written to clients",
                Counter::default(),
            ),
            conflated: register(
                r,
                "conflated",
                "Snapshot frames replaced by a newer one before a slow client read them",
                Counter::default(),
            ),
            slow_consumer_closes: register(
                r,
                "slow_consumer_closes",
                "Connections closed with 4008 for falling behind on events",
                Counter::default(),
            ),
            nats_slow_consumer: register(
                r,
                "nats_slow_consumer",
                "Messages NATS dropped because a subscription's buffer was full",
                Counter::default(),
            ),
            auth_failures: register(
                r,
                "auth_failures",
                "Refused connections, by reason",
                Family::default(),
            ),
            client_errors: register(
                r,
                "client_errors",
                "Error replies sent to clients, by code",
                Family::default(),
            ),
            fanout_latency: register(
                r,
                "fanout_latency_seconds",
                "Time from NATS receive to the frame written to the client's socket",
                Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            ),
            event_catch_ups: register(
                r,
                "event_catch_ups",
                "Clients resuming with `since` whose events are being read from the stream now",
                Gauge::default(),
            ),
            replay_bytes_waiting: register(
                r,
                "replay_bytes_waiting",
                "Bytes of events replayed to resuming clients, or read back after a gap, and not written to them yet",
                Gauge::default(),
            ),
            events_cache_bytes: register(
                r,
                "events_cache_bytes",
                "Bytes of recent events kept for resuming clients, all event subjects together",
                Gauge::default(),
            ),
            snapshot_retries: register(
                r,
                "snapshot_retries",
                "Snapshot subjects whose current value is read again, with backoff, because JetStream did not answer",
                Gauge::default(),
            ),
            snapshots_recovered: register(
                r,
                "snapshots_recovered",
                "Alerts and fleet snapshots the periodic check read from the stream newer than what had arrived live (lost on the way)",
                Counter::default(),
            ),
            event_topics_behind: register(
                r,
                "event_topics_behind",
                "Event topics the periodic check found behind the events stream and standing still for a second (their newest events lost on the way), and had read back",
                Counter::default(),
            ),
            stream_readable: register(
                r,
                "stream_readable",
                "1 while the JetStream stream answers reads (current snapshots, event history), 0 while it does not",
                Family::default(),
            ),
            events_delivered: register(
                r,
                "events_delivered",
                "Events delivered in seq order to this instance's subscribers of a topic",
                Counter::default(),
            ),
            events_duplicate: register(
                r,
                "events_duplicate",
                "Events received again (a relay repeated after a failover, or read back before they arrived live) and dropped",
                Counter::default(),
            ),
            events_filled: register(
                r,
                "events_filled",
                "Events missing on the live path and read back from the events stream",
                Counter::default(),
            ),
            events_replayed: register(
                r,
                "events_replayed",
                "Events replayed to clients that subscribed with since",
                Counter::default(),
            ),
            events_read_for_replay: register(
                r,
                "events_read_for_replay",
                "Events read back from the events stream for clients that subscribed with since",
                Counter::default(),
            ),
            event_history_gets: register(
                r,
                "event_history_gets",
                "Reads of the events stream made to find and read event history (the newest event of a topic included)",
                Counter::default(),
            ),
            event_resets: register(
                r,
                "event_resets",
                "events_reset messages sent: events a client asked for could not be delivered",
                Counter::default(),
            ),
        }
    }

    pub fn closed(&self, code: u16) {
        self.closes
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}
