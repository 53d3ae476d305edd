//! What the gateways cost: CPU seconds and RSS from `/proc/<pid>` (when the bench is given the
//! pids), and the gauges and counters of each gateway's `/metrics`. The gateway's `/metrics`
//! exports no process CPU or memory, so without a pid those stay unknown.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, which is 100 on every platform
/// Linux supports for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel (socket writes and reads, epoll).
    pub system_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process is gone.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after "state".
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        system_seconds: stime as f64 / TICKS_PER_SECOND,
        rss_bytes: rss_kib * 1024,
    })
}

/// Whether process `pid` has ended: gone from `/proc`, or a zombie its parent has not reaped
/// yet.
pub fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which may itself hold spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.chars().next());
    matches!(state, Some('Z' | 'X'))
}

/// Whether the gateway at `url` (its `/readyz`) answers ready.
pub async fn ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The figures the bench reads from a gateway's `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct GatewayMetrics {
    pub connections: f64,
    pub subscriptions: f64,
    pub nats_subscriptions: f64,
    pub messages_in: f64,
    pub messages_out: f64,
    pub conflated: f64,
    pub slow_consumer_closes: f64,
    pub nats_slow_consumer: f64,
}

/// Sums every sample of `name` (with any labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let head = l.split([' ', '{']).next().unwrap_or_default();
            head == name
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Prometheus text a `/metrics` endpoint at `url` serves; `None` when it does not answer
/// with success within 5 s.
async fn metrics_text(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.error_for_status().ok()?.text().await.ok()
}

/// Sums the samples of `name` that carry `label` (`kind="events"`) in Prometheus text.
pub fn labelled(text: &str, name: &str, label: &str) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| {
            l.split('}')
                .next()
                .is_some_and(|labels| labels.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Events the poller has relayed to NATS: its `pulse_poller_publishes_total{kind="events"}`.
pub async fn poller_relayed(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = metrics_text(http, url).await?;
    Some(labelled(&text, "pulse_poller_publishes_total", r#"kind="events""#) as u64)
}

impl GatewayMetrics {
    pub fn parse(text: &str) -> Self {
        let m = |name: &str| metric(text, &format!("pulse_gateway_{name}"));
        Self {
            connections: m("connections"),
            subscriptions: m("subscriptions"),
            nats_subscriptions: m("nats_subscriptions"),
            messages_in: m("messages_in_total"),
            messages_out: m("messages_out_total"),
            conflated: m("conflated_total"),
            slow_consumer_closes: m("slow_consumer_closes_total"),
            nats_slow_consumer: m("nats_slow_consumer_total"),
        }
    }
}

/// The cumulative buckets `(le, count)` of a Prometheus histogram, `+Inf` last (as
/// `f64::MAX`).
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let le = rest.split("le=\"").nth(1)?.split('"').next()?;
            // JSON has no infinity, and readings travel between shards as JSON.
            let le = if le == "+Inf" {
                f64::MAX
            } else {
                le.parse().ok()?
            };
            let count = rest.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// The gateway's own fan-out latency (NATS receive → frame written) between two readings of
/// its histogram, as upper bucket bounds in milliseconds: (p50, p99, samples). The buckets
/// double in width, so these are within a factor of two; `f64::MAX` means past the last
/// bucket.
pub fn fanout_quantiles(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let at = |q: f64| {
        delta
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map_or(f64::MAX, |(le, _)| {
                if *le < f64::MAX {
                    le * 1000.0
                } else {
                    f64::MAX
                }
            })
    };
    Some((at(0.5), at(0.99), total))
}

/// Reads one gateway's `/metrics`: the figures, and the fan-out latency histogram.
pub async fn scrape_all(
    http: &reqwest::Client,
    url: &str,
) -> Option<(GatewayMetrics, Vec<(f64, f64)>)> {
    let text = metrics_text(http, url).await?;
    Some((
        GatewayMetrics::parse(&text),
        histogram_buckets(&text, "pulse_gateway_fanout_latency_seconds"),
    ))
}

/// Reads one gateway's `/metrics`.
pub async fn scrape(http: &reqwest::Client, url: &str) -> Option<GatewayMetrics> {
    scrape_all(http, url).await.map(|(metrics, _)| metrics)
}

/// A gateway the bench watches.
#[derive(Debug, Clone)]
pub struct Watched {
    pub metrics_url: String,
    pub pid: Option<u32>,
}

/// A reading of every watched gateway at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reading {
    pub proc: Vec<Option<ProcSample>>,
    pub metrics: Vec<Option<GatewayMetrics>>,
    /// Each gateway's fan-out latency histogram, cumulative `(le, count)`.
    #[serde(default)]
    pub fanout: Vec<Vec<(f64, f64)>>,
}

impl Reading {
    pub async fn take(http: &reqwest::Client, gateways: &[Watched]) -> Reading {
        let mut reading = Reading::default();
        for g in gateways {
            reading.proc.push(g.pid.and_then(proc_sample));
            match scrape_all(http, &g.metrics_url).await {
                Some((m, h)) => {
                    reading.metrics.push(Some(m));
                    reading.fanout.push(h);
                }
                None => {
                    reading.metrics.push(None);
                    reading.fanout.push(Vec::new());
                }
            }
        }
        reading
    }

    /// `pick` of every gateway's process summed, when every one has a pid.
    fn every_proc<T: std::iter::Sum<T>>(&self, pick: impl Fn(&ProcSample) -> T) -> Option<T> {
        self.proc.iter().map(|p| p.as_ref().map(&pick)).sum()
    }

    /// CPU seconds of all gateways together, when every one has a pid.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.every_proc(|p| p.cpu_seconds)
    }

    /// Kernel CPU seconds of all gateways together, when every one has a pid.
    pub fn system_seconds(&self) -> Option<f64> {
        self.every_proc(|p| p.system_seconds)
    }

    /// RSS of all gateways together, when every one has a pid.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.every_proc(|p| p.rss_bytes)
    }

    /// Snapshot frames all gateways conflated so far, when every one answered.
    pub fn conflated(&self) -> Option<f64> {
        self.metrics.iter().map(|m| m.map(|m| m.conflated)).sum()
    }

    /// The fan-out latency histogram of all gateways together.
    pub fn fanout_total(&self) -> Vec<(f64, f64)> {
        let mut total: Vec<(f64, f64)> = Vec::new();
        for h in &self.fanout {
            for (le, n) in h {
                match total.iter_mut().find(|(l, _)| l == le) {
                    Some((_, t)) => *t += n,
                    None => total.push((*le, *n)),
                }
            }
        }
        total
    }

    /// A metric summed over the gateways that answered.
    pub fn sum(&self, pick: impl Fn(&GatewayMetrics) -> f64) -> f64 {
        self.metrics.iter().flatten().map(pick).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = proc_sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_seconds >= 0.0);
        assert!(proc_sample(u32::MAX).is_none());
    }

    #[test]
    fn tells_a_running_process_from_an_ended_one() {
        assert!(!exited(std::process::id()));
        assert!(exited(u32::MAX));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("run true");
        let pid = child.id();
        // Not reaped yet: a zombie, which has ended all the same.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !exited(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(exited(pid));
        child.wait().expect("reap true");
    }

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP x\npulse_gateway_connections 12\npulse_gateway_connections_other 5\n\
                    pulse_gateway_closes_total{code=\"1000\"} 3\npulse_gateway_closes_total{code=\"1006\"} 4\n";
        assert_eq!(metric(text, "pulse_gateway_connections"), 12.0);
        assert_eq!(metric(text, "pulse_gateway_closes_total"), 7.0);
        assert_eq!(GatewayMetrics::parse(text).connections, 12.0);
        let poller = "pulse_poller_publishes_total{kind=\"alerts\"} 4\n\
                      pulse_poller_publishes_total{kind=\"events\"} 250\n";
        assert_eq!(
            labelled(poller, "pulse_poller_publishes_total", r#"kind="events""#),
            250.0
        );
    }

    #[test]
    fn reads_histogram_quantiles() {
        let before =
            "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"0.002\"} 0\nh_bucket{le=\"+Inf\"} 0\n";
        let after =
            "h_bucket{le=\"0.001\"} 60\nh_bucket{le=\"0.002\"} 99\nh_bucket{le=\"+Inf\"} 100\n";
        let (b, a) = (
            histogram_buckets(before, "h"),
            histogram_buckets(after, "h"),
        );
        assert_eq!(a.len(), 3);
        let (p50, p99, n) = fanout_quantiles(&b, &a).unwrap();
        assert_eq!((p50, p99, n), (1.0, 2.0, 100.0));
    }
}
