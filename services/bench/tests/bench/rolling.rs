//! A rolling restart of the gateways under `pulse-bench` load. Two gateways run in processes
//! of their own on fixed addresses and drain on SIGTERM; the bench restarts them in turn while
//! events flow through the outbox, and the test plays their supervisor: a gateway that exits
//! is started again on its address. Every client must end with every event once, in order,
//! having been told (1012) each time its gateway went away.

use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use pulse_test_support::ScratchDb;
use pulse_test_support::gateway::wait_ready;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    assert_clean_connections, assert_every_event_once, bench, bench_config, flags, gateway_config,
    run_gateway_process, run_test_alone, spawn_poller,
};

/// Set, to the address to listen on, for a child process of this test binary that is to run a
/// gateway which drains on SIGTERM.
const RESTARTABLE_ENV: &str = "PULSE_BENCH_TEST_RESTARTABLE_GATEWAY";

/// `PULSE_DRAIN_SECONDS` of those gateways: their clients' 1012 closes are spread over it.
const DRAIN_SECONDS: u64 = 1;

/// A gateway process, killed (if still alive) and reaped on drop.
struct GatewayProcess(Child);

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a gateway in a child process listening on `addr`, and waits until it is ready.
async fn start_gateway_at(addr: SocketAddr) -> GatewayProcess {
    let child = run_test_alone(
        "rolling::restartable_gateway_process",
        (RESTARTABLE_ENV, &addr.to_string()),
        Stdio::null(),
    );
    let process = GatewayProcess(child);
    wait_ready(addr).await;
    process
}

/// Runs only as the child process of [`start_gateway_at`]: a gateway on the given address
/// until SIGTERM, then a drain. In an ordinary test run it returns at once.
#[test]
fn restartable_gateway_process() {
    let Some(addr) = std::env::var_os(RESTARTABLE_ENV) else {
        return;
    };
    let addr: SocketAddr = addr.to_str().unwrap().parse().unwrap();
    run_gateway_process(async {
        // As the gateway binary does: the address is free again while the connections of the
        // process before are in TIME_WAIT.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        let mut config = gateway_config();
        config.drain = std::time::Duration::from_secs(DRAIN_SECONDS);
        pulse_gateway::run(config, listener, pulse_common::shutdown::signal())
            .await
            .unwrap();
    });
}

/// Restarts each gateway on its address whenever its process exits, until stopped.
struct Supervisor {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<ExitStatus>>,
}

impl Supervisor {
    fn start(gateways: Vec<(SocketAddr, GatewayProcess)>) -> Supervisor {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut gateways = gateways;
                let mut exits = Vec::new();
                while !stop.is_cancelled() {
                    for (addr, process) in &mut gateways {
                        if let Some(status) = process.0.try_wait().unwrap() {
                            exits.push(status);
                            *process = start_gateway_at(*addr).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // The gateways still running are killed as `gateways` is dropped.
                exits
            }
        });
        Supervisor { stop, task }
    }

    /// Stops supervising, kills the gateways, and returns how the ones that exited ended.
    async fn stop(self) -> Vec<ExitStatus> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_every_client_resumes() {
    let db = ScratchDb::migrated("bench").await;
    let poller = spawn_poller(&db.url).await;
    let addrs = [free_addr(), free_addr()];
    let mut gateways = Vec::new();
    for addr in addrs {
        gateways.push((addr, start_gateway_at(addr).await));
    }
    let urls: Vec<String> = addrs
        .iter()
        .map(|a| format!("ws://{a}/api/v2/ws"))
        .collect();
    let pids: Vec<u32> = gateways.iter().map(|(_, p)| p.0.id()).collect();
    let pids_flag = format!("{},{}", pids[0], pids[1]);
    let supervisor = Supervisor::start(gateways);
    let r = bench(bench_config(
        "events",
        &urls,
        &flags(&format!(
            "--connections 50 --events-per-second 50 --seconds 6 --gateway-pid {pids_flag} --restart-pid {pids_flag} --kill-after-seconds 1.5 --database-url {} --poller-metrics {}", db.url, poller.metrics_url
        )),
    ))
    .await;
    let exits = supervisor.stop().await;

    // Both gateways drained and exited on their own, once each.
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert!(exits.iter().all(ExitStatus::success), "{exits:?}");
    // Every client is still connected at the end, and got every event once and in order.
    assert_clean_connections(&r, 50);
    assert_every_event_once(&r, 50, 300);
    let ev = r.events.as_ref().unwrap();
    assert_eq!(ev.behind, 0, "every client ends on the newest event");
    assert_eq!(ev.resets, 0, "nothing was missed, so nothing to be told");
    // The first gateway's 25 clients move to the second; then all 50 move back to the first,
    // restarted meanwhile. Every one was told with 1012, and resumed.
    let steps: Vec<(u32, u64, u64)> = ev
        .restarts
        .iter()
        .map(|st| (st.pid, st.lost, st.resumed))
        .collect();
    assert_eq!(steps, [(pids[0], 25, 25), (pids[1], 50, 50)]);
    assert_eq!((ev.lost, ev.resumed, ev.resume_failed), (75, 75, 0));
    assert_eq!(ev.lost_drained, 75, "every connection closed with 1012");
    let lost: Vec<_> = r
        .errors
        .iter()
        .filter(|(kind, _)| kind.starts_with("lost_"))
        .collect();
    assert_eq!(lost, [(&"lost_close_1012".to_owned(), &75)]);
    // Nothing else went wrong, but a client slow to read its close may first try the other
    // gateway after it began to drain in turn: refused with 503, it tries the next one.
    assert!(
        r.errors
            .keys()
            .all(|kind| kind.starts_with("lost_") || kind == "http_503"),
        "{:?}",
        r.error_samples
    );
    assert_eq!(ev.resubscribe_latency.count, 75);
    assert_eq!(ev.resume_latency.count, 75);
    assert_eq!(ev.away_latency.count, 75);
    // The closes are spread over the drain; each client is back on the other gateway moments
    // after its own close.
    for st in &ev.restarts {
        assert!(
            st.seconds_to_all_resumed <= DRAIN_SECONDS as f64 + 3.0,
            "{st:?}"
        );
    }
    let away = &ev.away_latency;
    assert!(away.max_ms <= 3000.0, "away up to {} ms", away.max_ms);
    drop(poller);
}
