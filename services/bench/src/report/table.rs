//! The report as a table for people: each figure on a line of its own, rates and latencies
//! in the units a reader compares.

use std::fmt::Write as _;

use super::{ChurnStats, ConnectStats, EventsStats, GatewayCost, Report, StageReport, StormStats};
use crate::latency::Latency;

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut t = Table::default();
        t.row(
            "scenario",
            format!("{} (run {})", self.scenario, self.run_id),
        );
        t.row("started", self.started_at.clone());
        t.row("shards", format!("{:?}", self.shards));
        t.row("load average at start", self.load_average.clone());
        if self.connections.attempted > 0 {
            t.connections(&self.connections);
        }
        if let Some(g) = &self.gateway {
            t.gateway(g);
        }
        for s in &self.stages {
            t.stage(s);
        }
        if let Some(ch) = &self.churn {
            t.churn(ch);
        }
        if let Some(st) = &self.storm {
            t.storm(st);
        }
        if let Some(ev) = &self.events {
            t.events(ev);
        }
        t.row("bench CPU", format!("{:.2} s", self.bench_cpu_seconds));
        if !self.errors.is_empty() {
            t.row("errors", format!("{:?}", self.errors));
            for e in &self.error_samples {
                t.row("  e.g.", e.clone());
            }
        }
        t.0
    }
}

/// The table being written, a section of the report at a time.
#[derive(Default)]
struct Table(String);

impl Table {
    /// One figure: its name, padded so that the values line up, and its value.
    fn row(&mut self, k: &str, v: String) {
        let _ = writeln!(self.0, "  {k:<38} {v}");
    }

    /// How the clients connected (only when some tried).
    fn connections(&mut self, c: &ConnectStats) {
        self.row(
            "connections",
            format!(
                "{} established, {} failed, {} held at the end",
                c.established, c.failed, c.held
            ),
        );
        self.row(
            "connection setup rate",
            format!("{:.0}/s ({:.2} s for all)", c.per_second, c.setup_seconds),
        );
        self.row("setup latency", latency(&c.setup_latency));
    }

    /// What the gateways cost to hold the clients.
    fn gateway(&mut self, g: &GatewayCost) {
        self.row(
            "gateway RSS before / connected",
            mib_pair(g.rss_before_bytes, g.rss_connected_bytes),
        );
        if let Some(per) = g.rss_per_connection_bytes {
            self.row(
                "gateway RSS per connection",
                format!("{:.2} KiB", per / 1024.0),
            );
        }
        if let Some(cpu) = g.connect_cpu_seconds {
            self.row("gateway CPU while connecting", format!("{cpu:.2} s"));
        }
    }

    /// One publishing stage: what was sent, what arrived, how fast, at what gateway cost.
    fn stage(&mut self, s: &StageReport) {
        self.row(
            &format!("stage {} publish", s.stage),
            format!(
                "{:.0} msgs/s, {} published over {:.1} s",
                s.msgs_per_second, s.published, s.seconds
            ),
        );
        self.row(
            "  deliveries",
            format!(
                "{} expected, {} received, {} missing, {} duplicated",
                s.expected, s.received, s.missing, s.duplicated
            ),
        );
        self.row(
            "  missing: merged / lost",
            format!(
                "{} merged into a newer snapshot / {} lost; {} clients behind",
                s.merged, s.lost, s.behind
            ),
        );
        if let Some(n) = s.gateway_conflated {
            self.row("  snapshots the gateways conflated", n.to_string());
        }
        self.row("  deliveries/s", format!("{:.0}", s.deliveries_per_second));
        self.row("  latency", latency(&s.latency));
        if s.gateway_rss_bytes.is_some() {
            self.row("  gateway RSS at the end", mib(s.gateway_rss_bytes));
        }
        if let (Some(p50), Some(p99)) = (s.gateway_fanout_p50_ms, s.gateway_fanout_p99_ms) {
            self.row(
                "  gateway's own fan-out latency",
                format!("p50 <= {p50:.2} ms, p99 <= {p99:.2} ms (histogram buckets)"),
            );
        }
        if let (Some(cpu), Some(per)) = (s.gateway_cpu_seconds, s.deliveries_per_gateway_cpu_second)
        {
            let system = s
                .gateway_system_seconds
                .map_or_else(String::new, |sys| format!(" ({sys:.2} s in the kernel)"));
            self.row(
                "  gateway CPU",
                format!("{cpu:.2} s{system}, {per:.0} deliveries per CPU-second"),
            );
        }
    }

    /// The churn cycles, and whether the gateways were left with nothing.
    fn churn(&mut self, ch: &ChurnStats) {
        self.row(
            "churn cycles",
            format!(
                "{} of {} completed, {} failed, {:.0}/s",
                ch.completed, ch.cycles, ch.failed, ch.cycles_per_second
            ),
        );
        self.row("  setup latency", latency(&ch.setup_latency));
        if let Some(after) = &ch.after {
            self.row(
                "  gateway after",
                format!(
                    "{} connections, {} subscriptions, {} NATS subscriptions",
                    after.connections, after.subscriptions, after.nats_subscriptions
                ),
            );
        }
        self.row(
            "  gateway RSS warm / end",
            mib_pair(ch.rss_warm_bytes, ch.rss_end_bytes),
        );
    }

    /// The storm: every client cut and reconnected at once.
    fn storm(&mut self, st: &StormStats) {
        self.row(
            "storm",
            format!(
                "{} of {} reconnected, {} failed, all within {:.2} s ({:.0}/s)",
                st.reconnected, st.clients, st.failed, st.seconds_to_all, st.reconnects_per_second
            ),
        );
        self.row("  reconnect latency", latency(&st.reconnect_latency));
    }

    /// The events run: the outbox, the relay, the fault and the clients' resumptions.
    fn events(&mut self, ev: &EventsStats) {
        self.row(
            "events through the outbox",
            format!(
                "{} inserted ({} failed) over {:.1} s: {:.1}/s of {:.0}/s asked; newest seq {}",
                ev.inserted,
                ev.insert_failed,
                ev.insert_seconds,
                ev.inserted_per_second,
                ev.rate,
                ev.last_seq
            ),
        );
        self.row("  insert round trip", latency(&ev.insert_latency));
        let poller = ev
            .poller_relayed
            .map_or_else(String::new, |n| format!(" (the poller counted {n})"));
        self.row(
            "  relayed to NATS",
            format!(
                "{}{poller} over {:.1} s: {:.1}/s",
                ev.relayed, ev.relay_seconds, ev.relayed_per_second
            ),
        );
        self.row("  insert → NATS", latency(&ev.relay_latency));
        let fault = self.fault(ev);
        self.row(
            "  connections lost / resumed / failed",
            format!(
                "{} / {} / {} ({} closed with 1012); {} events_reset received; \
                 {} clients behind at the end",
                ev.lost, ev.resumed, ev.resume_failed, ev.lost_drained, ev.resets, ev.behind
            ),
        );
        // Each client's return, timed from the fault, and from its own loss.
        let since_fault = [
            ("connection lost", &ev.lost_latency),
            ("subscribed again", &ev.resubscribe_latency),
            ("first event again", &ev.resume_latency),
        ];
        for (then, l) in since_fault {
            self.row(&format!("  {fault} → {then}"), latency(l));
        }
        self.row(
            "  connection lost → subscribed again",
            latency(&ev.away_latency),
        );
        self.row(
            "  missed events, insert → client",
            latency(&ev.caught_up_latency),
        );
    }

    /// The gateway killed, or each step of the rolling restart; returns the signal the
    /// clients' losses are timed from.
    fn fault(&mut self, ev: &EventsStats) -> &'static str {
        if ev.restarts.is_empty() {
            match (ev.killed_pid, ev.killed_at_seconds) {
                (Some(pid), Some(at)) => self.row(
                    "gateway killed",
                    format!("pid {pid} (SIGKILL) {at:.2} s after the first insert"),
                ),
                _ => self.row("gateway killed", "none".into()),
            }
            return "kill";
        }
        for (i, step) in ev.restarts.iter().enumerate() {
            self.row(
                &format!("gateway restarted ({} of {})", i + 1, ev.restarts.len()),
                format!(
                    "pid {} (SIGTERM) {:.2} s after the first insert: gone after {:.2} s, \
                     back after {:.2} s; {} lost, {} resumed, all within {:.2} s",
                    step.pid,
                    step.signalled_at_seconds,
                    step.exited_after_seconds,
                    step.ready_after_seconds,
                    step.lost,
                    step.resumed,
                    step.seconds_to_all_resumed
                ),
            );
        }
        "SIGTERM"
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown (no --gateway-pid)".into(),
        |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
    )
}

/// Two gateway RSS readings, `a / b`.
fn mib_pair(a: Option<u64>, b: Option<u64>) -> String {
    format!("{} / {}", mib(a), mib(b))
}

fn latency(l: &Latency) -> String {
    if l.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}
