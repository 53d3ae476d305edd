//! The report as a table for people: each figure on a line of its own, rates and latencies
//! in the units a reader compares.

use std::fmt::Write as _;

use super::Report;
use crate::latency::Latency;

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<38} {v}");
        };
        row(
            "scenario",
            format!("{} (run {})", self.scenario, self.run_id),
        );
        row("started", self.started_at.clone());
        row("shards", format!("{:?}", self.shards));
        row("load average at start", self.load_average.clone());
        let c = &self.connections;
        if c.attempted > 0 {
            row(
                "connections",
                format!(
                    "{} established, {} failed, {} held at the end",
                    c.established, c.failed, c.held
                ),
            );
            row(
                "connection setup rate",
                format!("{:.0}/s ({:.2} s for all)", c.per_second, c.setup_seconds),
            );
            row("setup latency", latency(&c.setup_latency));
        }
        if let Some(g) = &self.gateway {
            row(
                "gateway RSS before / connected",
                format!(
                    "{} / {}",
                    mib(g.rss_before_bytes),
                    mib(g.rss_connected_bytes)
                ),
            );
            if let Some(per) = g.rss_per_connection_bytes {
                row(
                    "gateway RSS per connection",
                    format!("{:.2} KiB", per / 1024.0),
                );
            }
            if let Some(cpu) = g.connect_cpu_seconds {
                row("gateway CPU while connecting", format!("{cpu:.2} s"));
            }
        }
        for s in &self.stages {
            row(
                &format!("stage {} publish", s.stage),
                format!(
                    "{:.0} msgs/s, {} published over {:.1} s",
                    s.msgs_per_second, s.published, s.seconds
                ),
            );
            row(
                "  deliveries",
                format!(
                    "{} expected, {} received, {} missing, {} duplicated",
                    s.expected, s.received, s.missing, s.duplicated
                ),
            );
            row(
                "  missing: merged / lost",
                format!(
                    "{} merged into a newer snapshot / {} lost; {} clients behind",
                    s.merged, s.lost, s.behind
                ),
            );
            if let Some(n) = s.gateway_conflated {
                row("  snapshots the gateways conflated", n.to_string());
            }
            row("  deliveries/s", format!("{:.0}", s.deliveries_per_second));
            row("  latency", latency(&s.latency));
            if s.gateway_rss_bytes.is_some() {
                row("  gateway RSS at the end", mib(s.gateway_rss_bytes));
            }
            if let (Some(p50), Some(p99)) = (s.gateway_fanout_p50_ms, s.gateway_fanout_p99_ms) {
                row(
                    "  gateway's own fan-out latency",
                    format!("p50 <= {p50:.2} ms, p99 <= {p99:.2} ms (histogram buckets)"),
                );
            }
            if let (Some(cpu), Some(per)) =
                (s.gateway_cpu_seconds, s.deliveries_per_gateway_cpu_second)
            {
                let system = s
                    .gateway_system_seconds
                    .map_or_else(String::new, |sys| format!(" ({sys:.2} s in the kernel)"));
                row(
                    "  gateway CPU",
                    format!("{cpu:.2} s{system}, {per:.0} deliveries per CPU-second"),
                );
            }
        }
        if let Some(ch) = &self.churn {
            row(
                "churn cycles",
                format!(
                    "{} of {} completed, {} failed, {:.0}/s",
                    ch.completed, ch.cycles, ch.failed, ch.cycles_per_second
                ),
            );
            row("  setup latency", latency(&ch.setup_latency));
            if let Some(after) = &ch.after {
                row(
                    "  gateway after",
                    format!(
                        "{} connections, {} subscriptions, {} NATS subscriptions",
                        after.connections, after.subscriptions, after.nats_subscriptions
                    ),
                );
            }
            row(
                "  gateway RSS warm / end",
                format!("{} / {}", mib(ch.rss_warm_bytes), mib(ch.rss_end_bytes)),
            );
        }
        if let Some(st) = &self.storm {
            row(
                "storm",
                format!(
                    "{} of {} reconnected, {} failed, all within {:.2} s ({:.0}/s)",
                    st.reconnected,
                    st.clients,
                    st.failed,
                    st.seconds_to_all,
                    st.reconnects_per_second
                ),
            );
            row("  reconnect latency", latency(&st.reconnect_latency));
        }
        if let Some(ev) = &self.events {
            row(
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
            row("  insert round trip", latency(&ev.insert_latency));
            let poller = ev
                .poller_relayed
                .map_or_else(String::new, |n| format!(" (the poller counted {n})"));
            row(
                "  relayed to NATS",
                format!(
                    "{}{poller} over {:.1} s: {:.1}/s",
                    ev.relayed, ev.relay_seconds, ev.relayed_per_second
                ),
            );
            row("  insert → NATS", latency(&ev.relay_latency));
            let fault = if ev.restarts.is_empty() {
                match (ev.killed_pid, ev.killed_at_seconds) {
                    (Some(pid), Some(at)) => row(
                        "gateway killed",
                        format!("pid {pid} (SIGKILL) {at:.2} s after the first insert"),
                    ),
                    _ => row("gateway killed", "none".into()),
                }
                "kill"
            } else {
                for (i, step) in ev.restarts.iter().enumerate() {
                    row(
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
            };
            row(
                "  connections lost / resumed / failed",
                format!(
                    "{} / {} / {} ({} closed with 1012); {} events_reset received; \
                     {} clients behind at the end",
                    ev.lost, ev.resumed, ev.resume_failed, ev.lost_drained, ev.resets, ev.behind
                ),
            );
            row(
                &format!("  {fault} → connection lost"),
                latency(&ev.lost_latency),
            );
            row(
                &format!("  {fault} → subscribed again"),
                latency(&ev.resubscribe_latency),
            );
            row(
                &format!("  {fault} → first event again"),
                latency(&ev.resume_latency),
            );
            row(
                "  connection lost → subscribed again",
                latency(&ev.away_latency),
            );
            row(
                "  missed events, insert → client",
                latency(&ev.caught_up_latency),
            );
        }
        row("bench CPU", format!("{:.2} s", self.bench_cpu_seconds));
        if !self.errors.is_empty() {
            row("errors", format!("{:?}", self.errors));
            for e in &self.error_samples {
                row("  e.g.", e.clone());
            }
        }
        t
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown (no --gateway-pid)".into(),
        |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
    )
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
