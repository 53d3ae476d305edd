//! Fixtures: a gateway on port 0 running in this process, or in a child process of its own
//! (so it can be killed); the poller relaying a scratch database's events; bench
//! configurations for them.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pulse_bench::report::StageReport;
use pulse_bench::{BenchConfig, Report};
use pulse_gateway::GatewayConfig;
use pulse_test_support::gateway::{Gateway, wait_ready};
use pulse_test_support::jwt::SECRET;
use pulse_test_support::{nats_url, parse_config};
use tokio_util::sync::CancellationToken;

/// Set for a child process of this test binary that is to run a gateway.
const CHILD_GATEWAY_ENV: &str = "PULSE_BENCH_TEST_CHILD_GATEWAY";
/// The line such a child prints once it listens, followed by its address.
const CHILD_LISTENING: &str = "bench test gateway listening on ";

pub fn gateway_config() -> GatewayConfig {
    let mut config = pulse_test_support::gateway::config(&[]);
    config.drain = std::time::Duration::from_secs(0);
    // Every bench client is the same user (`sub`), from loopback.
    config.max_connections_per_user = 1_000_000;
    config.max_connections_per_address = 1_000_000;
    config
}

/// Starts a gateway on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn_gateway() -> Gateway {
    pulse_test_support::gateway::spawn(gateway_config()).await
}

/// Starts a gateway on 127.0.0.1:0 using NATS at `nats_url` (one URL or a comma-separated
/// list) and waits until it is ready.
pub async fn spawn_gateway_on(nats_url: &str) -> Gateway {
    let mut config = gateway_config();
    config.nats.url = nats_url.to_owned();
    pulse_test_support::gateway::spawn(config).await
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
    parse_config(&args)
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

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v2/ws", self.addr)
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This test binary run again as a child process with only the test `name` selected (on the
/// shared NATS), `env` set to tell it what to do, its output to `stdout`.
pub fn run_test_alone(name: &str, env: (&str, &str), stdout: Stdio) -> Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(env.0, env.1)
        .env("NATS_URL", nats_url())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Starts a gateway in a child process on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn_child_gateway() -> ChildGateway {
    let mut child = run_test_alone(
        "helpers::gateway_process",
        (CHILD_GATEWAY_ENV, "1"),
        Stdio::piped(),
    );
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

/// Runs `gateway` to its end in a child process of [`run_test_alone`], on two threads as a
/// small gateway host would.
pub fn run_gateway_process(gateway: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(gateway);
}

/// Runs only as the child process of [`spawn_child_gateway`]: a gateway until killed.
/// In an ordinary test run it returns at once.
#[test]
fn gateway_process() {
    if std::env::var_os(CHILD_GATEWAY_ENV).is_none() {
        return;
    }
    run_gateway_process(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{CHILD_LISTENING}{}", listener.local_addr().unwrap());
        pulse_gateway::run(gateway_config(), listener, std::future::pending())
            .await
            .unwrap();
    });
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
    spawn_poller_with(database_url, &[]).await
}

/// [`spawn_poller`] with `extra` flags; a `--nats-url` among them replaces the shared server.
pub async fn spawn_poller_with(database_url: &str, extra: &[&str]) -> Poller {
    let nats = nats_url();
    let mut args = vec!["pulse-poller", "--database-url", database_url];
    if !extra.contains(&"--nats-url") {
        args.extend(["--nats-url", &nats]);
    }
    args.extend_from_slice(extra);
    let config: pulse_poller::PollerConfig = parse_config(&args);
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

/// Runs `scenario` with `args` (see [`flags`]) against a gateway of its own.
pub async fn bench_alone(scenario: &str, args: &str) -> Report {
    let gateway = spawn_gateway().await;
    bench(bench_config(scenario, &[gateway.ws_url()], &flags(args))).await
}

/// Runs `scenario` with `clients` clients and `args` against a gateway of its own, asserts
/// every client connected, held on and lost nothing ([`assert_clean_connections`],
/// [`assert_no_loss`]), and returns the first stage for the scenario's own counts.
pub async fn bench_lossless(clients: u64, scenario: &str, args: &str) -> StageReport {
    let r = bench_alone(scenario, &format!("--connections {clients} {args}")).await;
    assert_clean_connections(&r, clients);
    assert_no_loss(&r);
    r.stages[0].clone()
}

/// Command-line flags written as one line: `args` split at spaces.
pub fn flags(args: &str) -> Vec<&str> {
    args.split_whitespace().collect()
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

/// Asserts every stage delivered each snapshot once or merged it into a newer one, lost none,
/// and left every client on the newest state, with a latency for each delivery. A merged
/// snapshot is one the gateway conflated for a slow client, as the protocol allows: the run
/// merged no more and no fewer than the gateways say they conflated, so a snapshot dropped on
/// the way without a newer one replacing it in the client's queue still fails.
pub fn assert_no_loss(r: &Report) {
    assert!(!r.stages.is_empty());
    for s in &r.stages {
        assert!(s.published > 0, "stage {} published nothing", s.stage);
        assert!(s.expected > 0);
        let counts = format!(
            "stage {}: {} expected, {} received, {} merged, {} lost, {} clients behind",
            s.stage, s.expected, s.received, s.merged, s.lost, s.behind
        );
        assert_eq!(s.lost, 0, "{counts}");
        assert_eq!(
            s.behind, 0,
            "every client ends on the newest state: {counts}"
        );
        assert_eq!(s.received + s.merged, s.expected, "{counts}");
        assert_eq!(s.duplicated, 0, "stage {}", s.stage);
        assert_eq!(s.latency.count, s.received);
        assert!(s.latency.p99_ms > 0.0 && s.latency.max_ms >= s.latency.p99_ms);
    }
    let merged: u64 = r.stages.iter().map(|s| s.merged).sum();
    let conflated: Option<u64> = r.stages.iter().map(|s| s.gateway_conflated).sum();
    assert_eq!(
        Some(merged),
        conflated,
        "merged snapshots are exactly the ones the gateways conflated"
    );
    assert!(!r.errors.contains_key("stray_frames"), "{:?}", r.errors);
}

/// Asserts an events run wrote `events` events through the outbox, the poller relayed each
/// one, and each of `clients` clients got every one of them once and in order.
pub fn assert_every_event_once(r: &Report, clients: u64, events: u64) {
    let s = &r.stages[0];
    assert_eq!(s.published, events);
    assert_eq!(
        s.expected,
        clients * events,
        "every client expects every event"
    );
    assert_eq!(s.missing, 0, "events lost: {s:?}");
    assert_eq!(s.duplicated, 0, "seq went backwards or repeated: {s:?}");
    assert_eq!(s.received, s.expected);
    let ev = r.events.as_ref().unwrap();
    assert_eq!(
        (ev.inserted, ev.insert_failed, ev.last_seq),
        (events, 0, events)
    );
    assert_eq!(ev.relayed, events);
    assert_eq!(ev.poller_relayed, Some(events));
}
