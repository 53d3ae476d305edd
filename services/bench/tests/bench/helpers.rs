//! Fixtures: a gateway on port 0 running in this process, or in a child process of its own
//! (so it can be killed); a database of its own with the poller relaying its events; bench
//! configurations for them.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use pulse_bench::{BenchConfig, Report};
use pulse_gateway::GatewayConfig;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "bench-test-secret-bench-test-secret!";

/// Set for a child process of this test binary that is to run a gateway.
const CHILD_GATEWAY_ENV: &str = "PULSE_BENCH_TEST_CHILD_GATEWAY";
/// The line such a child prints once it listens, followed by its address.
const CHILD_LISTENING: &str = "bench test gateway listening on ";

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
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

pub fn gateway_config() -> GatewayConfig {
    let mut config = GatewayCli::try_parse_from(["pulse-gateway", "--jwt-secret", SECRET])
        .unwrap()
        .config;
    config.nats_url = nats_url();
    config.drain_seconds = 0;
    // Every bench client is the same user (`sub`), from loopback.
    config.max_connections_per_user = 1_000_000;
    config.max_connections_per_address = 1_000_000;
    config
}

pub async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway at {addr} not ready within 10 s");
}

/// Starts a gateway on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn_gateway() -> Gateway {
    spawn_gateway_on(&nats_url()).await
}

/// Starts a gateway on 127.0.0.1:0 using NATS at `nats_url` (one URL or a comma-separated
/// list) and waits until it is ready.
pub async fn spawn_gateway_on(nats_url: &str) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let mut config = gateway_config();
    config.nats_url = nats_url.to_owned();
    tokio::spawn(pulse_gateway::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    wait_ready(addr).await;
    Gateway { addr, stop }
}

/// A bench configuration for `scenario` against `gateways` (WebSocket URLs), with `extra`
/// flags.
pub fn bench_config(scenario: &str, gateways: &[String], extra: &[&str]) -> BenchConfig {
    let gateways = gateways.join(",");
    let nats = nats_url();
    let mut args = vec![
        "pulse-bench",
        scenario,
        "--gateway",
        &gateways,
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

impl Gateway {
    pub fn url(&self) -> String {
        format!("ws://{}/api/v2/ws", self.addr)
    }

    /// A bench configuration for `scenario` against this gateway, with `extra` flags.
    pub fn bench(&self, scenario: &str, extra: &[&str]) -> BenchConfig {
        bench_config(scenario, &[self.url()], extra)
    }
}

/// A gateway in a process of its own, so that it can be killed: this test binary run again
/// with only [`gateway_process`] selected. Killed (if still alive) and reaped on drop.
pub struct ChildGateway {
    pub addr: SocketAddr,
    child: Child,
}

impl ChildGateway {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/api/v2/ws", self.addr)
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a gateway in a child process on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn_child_gateway() -> ChildGateway {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "helpers::gateway_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_GATEWAY_ENV, "1")
        .env("NATS_URL", nats_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Killed on drop from here on, should the test fail before it is ready.
    let mut gateway = ChildGateway {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        child,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Reads the child's output until it ends, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The test harness may have started the line ("test … ... ").
            if let Some((_, addr)) = line.split_once(CHILD_LISTENING)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().parse::<SocketAddr>());
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("the child gateway did not listen within 20 s")
        .expect("the child gateway exited before listening")
        .unwrap();
    gateway.addr = addr;
    wait_ready(addr).await;
    gateway
}

/// Runs only as the child process of [`spawn_child_gateway`]: a gateway until killed.
/// In an ordinary test run it returns at once.
#[test]
fn gateway_process() {
    if std::env::var_os(CHILD_GATEWAY_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{CHILD_LISTENING}{}", listener.local_addr().unwrap());
        pulse_gateway::run(gateway_config(), listener, std::future::pending())
            .await
            .unwrap();
    });
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database of its own (`pulse_t_bench_<random>`), migrated; dropped by
/// [`TestDb::drop_now`] (or by the next `make test`, which drops leftovers).
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!("pulse_t_bench_{:012x}", rand::random::<u64>() >> 16);
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_database_url())
            .await
            .expect("PostgreSQL must be reachable at DATABASE_URL (run `make test`)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = with_database(&base_database_url(), &name);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        pulse_db::migrate(&pool).await.unwrap();
        pool.close().await;
        TestDb { name, url }
    }

    pub async fn drop_now(self) {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base_database_url())
            .await
            .unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
    }
}

#[derive(clap::Parser)]
struct PollerCli {
    #[command(flatten)]
    config: pulse_poller::PollerConfig,
}

/// A poller in this process, relaying one database's events; stopped on drop.
pub struct Poller {
    pub metrics_url: String,
    stop: CancellationToken,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a poller on `database_url` and waits until it is the active one.
pub async fn spawn_poller(database_url: &str) -> Poller {
    spawn_poller_with(database_url, |_| {}).await
}

/// [`spawn_poller`] with its configuration changed by `configure` first.
pub async fn spawn_poller_with(
    database_url: &str,
    configure: impl FnOnce(&mut pulse_poller::PollerConfig),
) -> Poller {
    let mut config = PollerCli::try_parse_from(["pulse-poller", "--database-url", database_url])
        .unwrap()
        .config;
    config.nats_url = nats_url();
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(pulse_poller::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(&metrics_url).await
            && let Ok(text) = r.text().await
            && text.lines().any(|l| l == "pulse_poller_active 1")
        {
            return Poller { metrics_url, stop };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the poller did not become active within 20 s");
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
