//! The poller's Prometheus metrics, one registry per poller instance.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pulse_common::startup::{latency_histograms, register};

/// What a publish carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Alerts,
    Fleet,
    Telemetry,
    Events,
}

/// Label values in snake case, as Prometheus conventions want.
macro_rules! label_value {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                use std::fmt::Write as _;
                encoder.write_str(match self { $($ty::$variant => $text),* })
            }
        }
    };
}

label_value!(Kind { Alerts => "alerts", Fleet => "fleet", Telemetry => "telemetry", Events => "events" });
label_value!(Query {
    Tenants => "tenants",
    Alerts => "alerts",
    Fleet => "fleet",
    FleetFingerprints => "fleet_fingerprints",
    Telemetry => "telemetry",
    Events => "events",
});
label_value!(Stage {
    Database => "database",
    Publish => "publish",
    Listen => "listen",
    Leadership => "leadership",
    Streams => "streams",
    Relay => "relay",
    Registry => "registry",
    Purge => "purge",
});

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: Kind,
}

/// Which database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    Tenants,
    Alerts,
    Fleet,
    /// The safety net's look at which tenants' devices may have changed.
    FleetFingerprints,
    Telemetry,
    Events,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabel {
    pub query: Query,
}

/// Where an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Database,
    Publish,
    Listen,
    Leadership,
    Streams,
    Relay,
    Registry,
    /// Removing a deleted tenant's data from NATS.
    Purge,
}

/// A stream, by name (`PULSE_STATE`, `PULSE_EVENTS`, `KV_PULSE_DEVICES`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: Stage,
}

#[derive(Clone)]
pub struct Metrics {
    pub publishes: Family<KindLabel, Counter>,
    pub unchanged: Family<KindLabel, Counter>,
    /// Snapshots that listed fewer items than their cap to fit the server's `max_payload`.
    pub trimmed: Family<KindLabel, Counter>,
    /// Messages not published because they exceed the server's `max_payload`.
    pub oversized: Family<KindLabel, Counter>,
    pub query_seconds: Family<QueryLabel, Histogram>,
    pub notifications: Counter,
    pub errors: Family<StageLabel, Counter>,
    pub active: Gauge,
    pub tenants: Gauge,
    pub telemetry_rows: Counter,
    pub fleet_devices_read: Counter,
    /// Events still waiting in the outbox after the last relay pass.
    pub relay_backlog: Gauge,
    /// Seconds from an event's commit to NATS acknowledging it.
    pub relay_seconds: Histogram,
    /// Times streams (or the device bucket) found missing or unable to store were created
    /// again.
    pub streams_restored: Counter,
    /// Deleted tenants whose subjects and registry keys were purged from NATS.
    pub tenants_purged: Counter,
    /// Writes a stream refused because its storage failed (JetStream error 10077).
    pub store_failures: Family<StreamLabel, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under the `pulse_poller` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("pulse_poller");
        Metrics {
            publishes: register(
                r,
                "publishes",
                "Messages published to NATS and acknowledged by JetStream",
                Family::default(),
            ),
            unchanged: register(
                r,
                "unchanged",
                "Snapshots read but not published because nothing changed",
                Family::default(),
            ),
            trimmed: register(
                r,
                "trimmed",
                "Snapshots that listed fewer items than their cap to fit the NATS server's max_payload",
                Family::default(),
            ),
            oversized: register(
                r,
                "oversized",
                "Messages not published because they exceed the NATS server's max_payload",
                Family::default(),
            ),
            query_seconds: register(
                r,
                "query_seconds",
                "Database read latency",
                latency_histograms(),
            ),
            notifications: register(
                r,
                "notifications",
                "Change notifications received from PostgreSQL",
                Counter::default(),
            ),
            errors: register(r, "errors", "Errors by stage", Family::default()),
            active: register(
                r,
                "active",
                "1 while this instance is the active poller, 0 on standby",
                Gauge::default(),
            ),
            tenants: register(
                r,
                "tenants",
                "Tenants known to the poller",
                Gauge::default(),
            ),
            telemetry_rows: register(
                r,
                "telemetry_rows",
                "Telemetry readings published as a device's latest",
                Counter::default(),
            ),
            fleet_devices_read: register(
                r,
                "fleet_devices_read",
                "Device rows read for fleet snapshots: the safety net reads only tenants whose devices may have changed",
                Counter::default(),
            ),
            relay_backlog: register(
                r,
                "relay_backlog",
                "Events still waiting in the outbox after the last relay pass",
                Gauge::default(),
            ),
            relay_seconds: register(
                r,
                "relay_seconds",
                "Time from an event's creation to its acknowledgement by JetStream",
                Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ),
            streams_restored: register(
                r,
                "streams_restored",
                "Times JetStream streams or the device bucket, found missing or unable to store, were created again",
                Counter::default(),
            ),
            tenants_purged: register(
                r,
                "tenants_purged",
                "Deleted tenants whose subjects and device registry keys were purged from NATS",
                Counter::default(),
            ),
            store_failures: register(
                r,
                "store_failures",
                "Writes a JetStream stream refused because its storage failed",
                Family::default(),
            ),
        }
    }

    pub fn streams_restored(&self) {
        self.streams_restored.inc();
    }

    pub fn store_failed(&self, stream: &str) {
        let label = StreamLabel {
            stream: stream.to_owned(),
        };
        self.store_failures.get_or_create(&label).inc();
    }

    pub fn published(&self, kind: Kind, n: u64) {
        self.publishes.get_or_create(&KindLabel { kind }).inc_by(n);
    }

    pub fn unchanged(&self, kind: Kind) {
        self.unchanged.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn trimmed(&self, kind: Kind) {
        self.trimmed.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn oversized(&self, kind: Kind) {
        self.oversized.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn error(&self, stage: Stage) {
        self.errors.get_or_create(&StageLabel { stage }).inc();
    }

    pub fn observe_query(&self, query: Query, started: std::time::Instant) {
        self.query_seconds
            .get_or_create(&QueryLabel { query })
            .observe(started.elapsed().as_secs_f64());
    }
}
