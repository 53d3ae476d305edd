//! What a run measured: one [`Report`] per process, as a human table or JSON, and the merge of
//! several shards' reports into one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::Latency;
use crate::probe::GatewayMetrics;

mod merge;
mod table;
#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub run_id: String,
    /// Shards (processes) whose clients this report covers.
    pub shards: Vec<usize>,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The command line of the (first) process.
    pub command: String,
    /// `/proc/loadavg` when the run started.
    pub load_average: String,
    /// The scenario's parameters.
    pub settings: serde_json::Value,
    pub connections: ConnectStats,
    /// Delivery per publishing stage (one for broadcast and telemetry, several for sweep).
    pub stages: Vec<StageReport>,
    pub churn: Option<ChurnStats>,
    pub storm: Option<StormStats>,
    /// The events scenario: the outbox, the relay, the kill and the resumptions.
    #[serde(default)]
    pub events: Option<EventsStats>,
    /// What the gateways cost; measured by the leading shard.
    pub gateway: Option<GatewayCost>,
    /// CPU seconds the bench processes used themselves.
    pub bench_cpu_seconds: f64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// The first few failures, verbatim.
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectStats {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    /// Connections still open at the end of the hold.
    pub held: u64,
    /// From the first connect to the last subscribe ack, seconds.
    pub setup_seconds: f64,
    /// Connection setups (TCP + upgrade + JWT + subscribe ack) per second.
    pub per_second: f64,
    /// Time of one setup, TCP connect to subscribe ack.
    pub setup_latency: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: u32,
    /// Messages published per second (all subjects).
    pub msgs_per_second: f64,
    pub published: u64,
    /// Frames the clients should have received: every message of every subject they hold.
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Messages received more than once (or out of order) by the same client.
    pub duplicated: u64,
    /// Messages not received: `merged` plus `lost`.
    pub missing: u64,
    /// Of `missing`: snapshots after which a newer one of the same subject reached the client,
    /// so the gateway merged them into it (conflation, which the protocol allows).
    #[serde(default)]
    pub merged: u64,
    /// Of `missing`: snapshots no newer one of their subject followed (the client ended on an
    /// older state), and every missing event.
    #[serde(default)]
    pub lost: u64,
    /// Connected clients that ended without the stage's newest message of a subject they held
    /// (or a newer one).
    #[serde(default)]
    pub behind: u64,
    /// Snapshot frames the gateways conflated over the stage (their
    /// `pulse_gateway_conflated_total`), read by the leading shard: what `merged` adds up to
    /// when the gateways serve no one else.
    #[serde(default)]
    pub gateway_conflated: Option<u64>,
    /// Publishing time of the stage, seconds.
    pub seconds: f64,
    pub deliveries_per_second: f64,
    /// Publish (publisher's clock) to WebSocket frame read (client's clock).
    pub latency: Latency,
    /// Gateway CPU seconds from the stage's first publish to its last delivery.
    pub gateway_cpu_seconds: Option<f64>,
    /// The part of `gateway_cpu_seconds` spent in the kernel.
    #[serde(default)]
    pub gateway_system_seconds: Option<f64>,
    pub deliveries_per_gateway_cpu_second: Option<f64>,
    /// Gateway RSS at the end of the stage (write buffers keep their peak size).
    #[serde(default)]
    pub gateway_rss_bytes: Option<u64>,
    /// The gateways' own view, from their `pulse_gateway_fanout_latency_seconds` histogram
    /// (NATS receive → frame written; upper bucket bounds, so within a factor of two).
    #[serde(default)]
    pub gateway_fanout_p50_ms: Option<f64>,
    #[serde(default)]
    pub gateway_fanout_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnStats {
    pub cycles: u64,
    pub completed: u64,
    pub failed: u64,
    pub seconds: f64,
    pub cycles_per_second: f64,
    /// Connect to subscribe ack, per cycle.
    pub setup_latency: Latency,
    /// The gateways' gauges once the last cycle ended (and they settled).
    pub after: Option<GatewayMetrics>,
    /// Connections, subscriptions and NATS subscriptions all back to 0.
    pub leak_free: Option<bool>,
    /// Gateway RSS after the first tenth of the cycles, and at the end.
    pub rss_warm_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormStats {
    pub clients: u64,
    pub reconnected: u64,
    pub failed: u64,
    /// From the cut to the last client subscribed again, seconds.
    pub seconds_to_all: f64,
    pub reconnects_per_second: f64,
    /// From the cut to this client's subscribe ack.
    pub reconnect_latency: Latency,
}

/// The events scenario's own figures; its deliveries are in the report's stage 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsStats {
    /// `pulse.v1.<tenant>.events.<topic>`
    pub subject: String,
    /// Events asked for per second.
    pub rate: f64,
    /// Events written with `pulse_emit_event`, and inserts that failed (leader only).
    pub inserted: u64,
    pub insert_failed: u64,
    /// From the first insert sent to the last one answered, seconds.
    pub insert_seconds: f64,
    pub inserted_per_second: f64,
    /// Round trip of one `SELECT pulse_emit_event(...)`.
    pub insert_latency: Latency,
    /// Distinct events seen on the NATS subject.
    pub relayed: u64,
    /// From the first insert to the last event seen on NATS, seconds.
    pub relay_seconds: f64,
    pub relayed_per_second: f64,
    /// Insert → message on NATS: the poller's relay.
    pub relay_latency: Latency,
    /// The poller's own count, `pulse_poller_publishes_total{kind="events"}`, over the run
    /// (with `--poller-metrics`).
    pub poller_relayed: Option<u64>,
    /// The topic's newest `seq` at the end.
    pub last_seq: u64,
    /// The gateway process killed, and when: seconds after the first insert.
    pub killed_pid: Option<u32>,
    pub killed_at_seconds: Option<f64>,
    /// The rolling restart (`--restart-pid`): one step per gateway, in order.
    pub restarts: Vec<RestartStep>,
    /// Connections lost (each client of the killed or restarted gateway), resumed on another
    /// gateway, and given up on.
    pub lost: u64,
    pub resumed: u64,
    pub resume_failed: u64,
    /// The part of `lost` the gateway closed with 1012 (service restart), i.e. drained; the
    /// rest ended without a word (a kill: 1006).
    pub lost_drained: u64,
    /// `events_reset` messages received: each means events a client could not get.
    pub resets: u64,
    /// Clients connected at some point that ended without the newest event (`last_seq`).
    pub behind: u64,
    /// From the kill (or the SIGTERM of the restart step it fell in) to a client seeing its
    /// connection end.
    pub lost_latency: Latency,
    /// From the kill (or SIGTERM) to a client's `subscribed` reply (with `since`) on another
    /// gateway.
    pub resubscribe_latency: Latency,
    /// From the kill (or SIGTERM) to a client's first event after resuming.
    pub resume_latency: Latency,
    /// From a client seeing its connection end to its `subscribed` reply on another gateway:
    /// the time it was away.
    pub away_latency: Latency,
    /// Insert → frame for the events a resumed client got for the time it was away (inserted
    /// before its new `subscribed` reply); these are part of stage 0's latency too.
    pub caught_up_latency: Latency,
}

/// One step of a rolling restart: a gateway sent SIGTERM, drained, gone and back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartStep {
    pub pid: u32,
    /// Its WebSocket URL (the replacement listens there too).
    pub gateway: String,
    /// When SIGTERM was sent: seconds after the first insert.
    pub signalled_at_seconds: f64,
    /// From SIGTERM to the process gone (every client drained).
    pub exited_after_seconds: f64,
    /// From SIGTERM to the replacement answering `/readyz` on the same address.
    pub ready_after_seconds: f64,
    /// Connections it ended (closed with 1012, or otherwise before its process was gone),
    /// and how many of them resumed.
    pub lost: u64,
    pub resumed: u64,
    /// From SIGTERM to the last of those clients subscribed again elsewhere.
    pub seconds_to_all_resumed: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayCost {
    pub pids: Vec<u32>,
    /// Gateway RSS before the clients connected, and once they all had (and settled).
    pub rss_before_bytes: Option<u64>,
    pub rss_connected_bytes: Option<u64>,
    pub rss_per_connection_bytes: Option<f64>,
    /// Gateway CPU seconds while the clients connected.
    pub connect_cpu_seconds: Option<f64>,
    /// `/metrics` once every client was connected.
    pub connected: Option<GatewayMetrics>,
}

impl Report {
    /// Recomputes the derived rates from the counts.
    pub fn finish(&mut self) {
        let c = &mut self.connections;
        c.per_second = rate(c.established, c.setup_seconds);
        for s in &mut self.stages {
            s.deliveries_per_second = rate(s.received, s.seconds);
            s.deliveries_per_gateway_cpu_second = s
                .gateway_cpu_seconds
                .filter(|cpu| *cpu > 0.0)
                .map(|cpu| s.received as f64 / cpu);
        }
        if let Some(churn) = &mut self.churn {
            churn.cycles_per_second = rate(churn.completed, churn.seconds);
        }
        if let Some(storm) = &mut self.storm {
            storm.reconnects_per_second = rate(storm.reconnected, storm.seconds_to_all);
        }
        if let Some(ev) = &mut self.events {
            ev.inserted_per_second = rate(ev.inserted, ev.insert_seconds);
            ev.relayed_per_second = rate(ev.relayed, ev.relay_seconds);
        }
        if let Some(g) = &mut self.gateway
            && let (Some(before), Some(after)) = (g.rss_before_bytes, g.rss_connected_bytes)
            && self.connections.held > 0
        {
            g.rss_per_connection_bytes =
                Some((after as f64 - before as f64) / self.connections.held as f64);
        }
    }
}

/// `n` per second over `seconds`; 0 when no time passed.
fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}
