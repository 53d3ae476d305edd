//! Fixtures: a gateway on port 0 running in this process, and bench configurations for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use pulse_bench::{BenchConfig, Report};
use pulse_gateway::GatewayConfig;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "bench-test-secret-bench-test-secret!";

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[derive(clap::Parser)]
struct GatewayCli {
    #[command(flatten)]
    config: GatewayConfig,
}

#[derive(clap::Parser)]
struct BenchCli {
    #[command(flatten)]
    config: BenchConfig,
}

pub struct Gateway {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a gateway on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn_gateway() -> Gateway {
    let mut config = GatewayCli::try_parse_from(["pulse-gateway", "--jwt-secret", SECRET])
        .unwrap()
        .config;
    config.nats_url = nats_url();
    config.drain_seconds = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(pulse_gateway::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await
            && r.status().is_success()
        {
            return Gateway { addr, stop };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway not ready within 10 s");
}

impl Gateway {
    /// A bench configuration for `scenario` against this gateway, with `extra` flags.
    pub fn bench(&self, scenario: &str, extra: &[&str]) -> BenchConfig {
        let url = format!("ws://{}/api/v2/ws", self.addr);
        let nats = nats_url();
        let mut args = vec![
            "pulse-bench",
            scenario,
            "--gateway",
            &url,
            "--jwt-secret",
            SECRET,
            "--nats-url",
            &nats,
            "--grace-ms",
            "1000",
            "--connect-timeout-seconds",
            "20",
        ];
        args.extend_from_slice(extra);
        BenchCli::try_parse_from(args).unwrap().config
    }
}

/// Runs a bench and prints its table (shown when the test fails).
pub async fn bench(config: BenchConfig) -> Report {
    let report = pulse_bench::run(config).await.unwrap();
    println!("{}", report.table());
    report
}

/// Asserts no client failed to connect or lost its connection.
pub fn assert_clean_connections(r: &Report, n: u64) {
    let c = &r.connections;
    assert_eq!(c.attempted, n, "{:?}", r.errors);
    assert_eq!(c.established, n, "{:?} {:?}", r.errors, r.error_samples);
    assert_eq!(c.failed, 0, "{:?}", r.error_samples);
    assert_eq!(c.held, n, "{:?}", r.error_samples);
    assert!(c.per_second > 0.0);
    assert_eq!(c.setup_latency.count, n);
}

/// Asserts every stage delivered everything exactly once, with a latency for each.
pub fn assert_no_loss(r: &Report) {
    assert!(!r.stages.is_empty());
    for s in &r.stages {
        assert!(s.published > 0, "stage {} published nothing", s.stage);
        assert!(s.expected > 0);
        assert_eq!(s.missing, 0, "stage {}: {s:?}", s.stage);
        assert_eq!(s.received, s.expected, "stage {}", s.stage);
        assert_eq!(s.duplicated, 0, "stage {}", s.stage);
        assert_eq!(s.latency.count, s.received);
        assert!(s.latency.p99_ms > 0.0 && s.latency.max_ms >= s.latency.p99_ms);
    }
    assert!(!r.errors.contains_key("stray_frames"), "{:?}", r.errors);
}
