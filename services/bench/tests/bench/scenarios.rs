use std::time::Duration;

use pulse_bench::Report;
use pulse_test_support::jwt::SECRET;
use pulse_test_support::{ScratchDb, nats_url};

use crate::helpers::{
    assert_clean_connections, assert_every_event_once, assert_no_loss, bench, bench_alone,
    bench_config, bench_lossless, flags, gateway_config, spawn_child_gateway, spawn_gateway,
    spawn_poller,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connects_and_holds_every_client() {
    let r = bench_alone("idle", "--connections 200 --seconds 1 --tenants 4").await;
    assert_clean_connections(&r, 200);
    let connected = r.gateway.as_ref().and_then(|g| g.connected).unwrap();
    assert_eq!(connected.connections, 200.0);
    assert_eq!(connected.subscriptions, 200.0);
    assert_eq!(connected.nats_subscriptions, 4.0, "one per tenant's alerts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_its_ops_address_apart_is_read_there() {
    let ops = std::net::SocketAddr::from(([127, 0, 0, 1], pulse_test_support::free_port()));
    let mut config = gateway_config();
    config.ops_addr = Some(ops);
    let gateway = pulse_test_support::gateway::spawn(config).await;
    let ops_flag = format!("--gateway-ops {ops}");
    let r = bench(bench_config(
        "idle",
        &[gateway.ws_url()],
        &flags(&format!("--connections 20 --seconds 1 {ops_flag}")),
    ))
    .await;
    assert_clean_connections(&r, 20);
    // The WebSocket port serves no metrics: these came from the ops address.
    let connected = r.gateway.as_ref().and_then(|g| g.connected).unwrap();
    assert_eq!(connected.connections, 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_delivers_every_message_to_every_client() {
    let s = bench_lossless(200, "broadcast", "--msgs-per-second 20 --seconds 2").await;
    assert_eq!(s.published, 40);
    assert_eq!(s.expected, 200 * 40);
}

/// The peer: the same load against a nats-server's own WebSocket, the clients speaking NATS's
/// protocol to it and the publisher publishing to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_over_nats_websocket_delivers_every_message_to_every_client() {
    let ws_port = pulse_test_support::free_port();
    let server = pulse_test_support::nats::PrivateNats::configured(
        |_| format!("websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"),
        &[],
    )
    .await;
    let mut config = bench_config(
        "broadcast",
        &[format!("ws://127.0.0.1:{ws_port}/")],
        &flags("--connections 100 --msgs-per-second 20 --seconds 2 --protocol nats"),
    );
    config.nats.url = server.url.clone();
    every_peer_message_once(&bench(config).await);
}

/// A peer's run of 100 clients at 20 messages a second for 2 s: every client got every
/// message once, each with its latency. (A peer conflates nothing, and says nothing of it.)
fn every_peer_message_once(r: &Report) {
    assert_clean_connections(r, 100);
    let s = &r.stages[0];
    assert_eq!((s.published, s.expected), (40, 100 * 40));
    assert_eq!(
        (s.received, s.duplicated, s.lost),
        (100 * 40, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.latency.count, s.received);
}

/// The other peer: the fan-out a team writes with Node's `ws` and the NATS client
/// (services/bench/peers/node-ws), driven as a gateway is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_against_the_node_peer_delivers_every_message_to_every_client() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/node-ws");
    assert!(
        std::path::Path::new(dir).join("node_modules").is_dir(),
        "the peer's packages are not installed: `npm ci` in {dir} (make test does it)"
    );
    // On a port the kernel picks as it listens, which it then says: a port picked beforehand
    // could be taken meanwhile by another test's server, which the bench would then drive.
    let mut peer = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("PORT", "0")
        .env("NATS_URL", nats_url())
        .env("PULSE_JWT_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the peer");
    let stdout = peer.stdout.take().expect("the peer's stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let said = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    let port: u16 = said
        .ok()
        .and_then(|line| line.ok().flatten())
        .and_then(|line| line.strip_prefix("node-ws peer on :")?.trim().parse().ok())
        .expect("the peer says the port it listens on");
    let r = bench(bench_config(
        "broadcast",
        &[format!("ws://127.0.0.1:{port}/api/v2/ws")],
        &flags("--connections 100 --msgs-per-second 20 --seconds 2"),
    ))
    .await;
    every_peer_message_once(&r);
    let _ = peer.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_delivers_each_clients_devices() {
    let s = bench_lossless(
        200,
        "telemetry",
        "--devices 50 --per-client 5 --hz 4 --seconds 2",
    )
    .await;
    assert_eq!(s.published, 50 * 4 * 2);
    // Every device has 200 * 5 / 50 = 20 subscribers and publishes 8 readings.
    assert_eq!(s.expected, 200 * 5 * 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_runs_stages_of_increasing_rate() {
    let r = bench_alone(
        "sweep",
        "--connections 100 --sweep-rates 10,30 --seconds 1 --sweep-p99-limit-ms 60000",
    )
    .await;
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stages[1].published, 30);
    assert_no_loss(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let r = bench_alone("churn", "--cycles 600 --churn-concurrency 16 --tenants 3").await;
    let churn = r.churn.as_ref().unwrap();
    assert_eq!(churn.completed, 600, "{:?}", r.error_samples);
    assert_eq!(churn.failed, 0);
    assert_eq!(churn.leak_free, Some(true), "{:?}", churn.after);
    let after = churn.after.unwrap();
    assert_eq!(after.connections, 0.0);
    assert_eq!(after.subscriptions, 0.0);
    assert_eq!(after.nats_subscriptions, 0.0);
    assert_eq!(churn.setup_latency.count, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_reconnects_every_client() {
    let r = bench_alone("storm", "--connections 200 --seconds 1").await;
    let storm = r.storm.as_ref().unwrap();
    assert_eq!(storm.clients, 200);
    assert_eq!(storm.reconnected, 200, "{:?}", r.error_samples);
    assert_eq!(storm.failed, 0);
    assert_eq!(r.connections.held, 200);
    assert!(storm.seconds_to_all > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_one_run_meet_on_nats_and_merge() {
    let gw = spawn_gateway().await;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let shard = |n: &str| {
        bench_config(
            "broadcast",
            &[gw.ws_url()],
            &[
                "--connections",
                "150",
                "--msgs-per-second",
                "10",
                "--seconds",
                "1",
                "--shards",
                "2",
                "--shard",
                n,
                "--run-id",
                &run_id,
            ],
        )
    };
    let (a, b) = tokio::join!(pulse_bench::run(shard("0")), pulse_bench::run(shard("1")));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.connections.established, 75);
    assert_eq!(b.connections.established, 75);
    let merged = Report::merge(vec![a, b]).unwrap();
    println!("{}", merged.table());
    assert_eq!(merged.shards, [0, 1]);
    assert_clean_connections(&merged, 150);
    assert_no_loss(&merged);
    assert_eq!(merged.stages[0].expected, 150 * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_on_the_other_gateway_after_a_kill() {
    let db = ScratchDb::migrated("bench").await;
    let poller = spawn_poller(&db.url).await;
    let doomed = spawn_child_gateway().await;
    let survivor = spawn_gateway().await;
    let pid = doomed.pid().to_string();
    let r = bench(bench_config(
        "events",
        &[doomed.ws_url(), survivor.ws_url()],
        &flags(&format!(
            "--connections 50 --events-per-second 50 --seconds 4 --kill-pid {pid} --kill-after-seconds 2 --database-url {} --poller-metrics {}", db.url, poller.metrics_url
        )),
    ))
    .await;
    assert_clean_connections(&r, 50);
    assert_every_event_once(&r, 50, 200);
    let s = &r.stages[0];
    assert_eq!(s.latency.count, s.received);
    let ev = r.events.as_ref().unwrap();
    assert_eq!(ev.killed_pid, Some(doomed.pid()));
    // Clients alternate between the gateways: half were on the one killed.
    assert_eq!(ev.lost, 25, "{:?}", r.error_samples);
    assert_eq!(ev.resumed, 25);
    assert_eq!(ev.resume_failed, 0);
    assert_eq!(ev.resets, 0);
    assert_eq!(ev.lost_latency.count, 25);
    assert_eq!(ev.resubscribe_latency.count, 25);
    assert_eq!(ev.resume_latency.count, 25);
    // The only failures are the connections the kill cut.
    assert!(
        r.errors.keys().all(|k| k.starts_with("lost_")),
        "{:?}",
        r.errors
    );
    assert_eq!(r.errors.values().sum::<u64>(), 25, "{:?}", r.errors);
    drop(doomed);
    drop(poller);
}
