//! What the tests of every Pulse crate share, written once: the addresses of the shared
//! PostgreSQL and NATS ([`env`](mod@env)), names that never collide between tests and runs
//! ([`unique`]), waiting on a condition with a deadline instead of sleeping ([`eventually`],
//! [`eventually_some`]),
//! scratch databases ([`db`]) and the rows to seed them with ([`seed`]), private nats-servers
//! a test may stop or configure ([`nats`]), a three-node cluster of them and a pair routed
//! through proxies a test can cut ([`nats_cluster`]), a NATS in operator mode and `.creds`
//! files issued as `nsc` would ([`operator`]), a TCP proxy to freeze or cut ([`proxy`]), certificates for TLS ([`tls`]), reading a Prometheus scrape ([`metric`]), free
//! ports ([`free_port`]), configurations parsed the way the services parse theirs
//! ([`parse_config`]), the loopback address as a trusted proxy ([`loopback_proxy`]), tokens signed with the test secret ([`jwt`]), an in-process gateway
//! ([`gateway`]), a WebSocket client of its protocol ([`ws`]), and the check that a crate's
//! modules import no loop ([`layout`]).
//!
//! A test dependency only: it panics with a message naming what is missing, which is what a
//! failing test should do.

pub mod db;
pub mod env;
pub mod gateway;
pub mod jwt;
pub mod layout;
pub mod nats;
pub mod nats_cluster;
pub mod operator;
pub mod proxy;
pub mod seed;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::time::{Duration, Instant};

pub use db::{Deployed, ScratchDb};
pub use env::{base_database_url, nats_url, through, with_database};

/// `label` followed by a random suffix, for tenant ids, subjects and database names that must
/// not collide between tests running in parallel, or with an earlier run's leftovers.
pub fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{:010x}", n & 0xff_ffff_ffff)
}

/// Waits until `check` holds, polling every 25 ms; panics naming `what` at the deadline.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts that `check` holds at every look for the whole of `window` (one every 25 ms): for
/// what must not happen, such as a counter that must not move, when nothing marks that the
/// work which could move it is over. Panics naming `what` at the first look it fails.
pub async fn throughout<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < window {
        assert!(
            check().await,
            "after {:?}, no longer: {what}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, and returns what it holds; panics naming
/// `what` after `within`.
pub async fn eventually_some<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `what`, begun at `started`, took less than `limit`: for the tests whose
/// guarantee is a bound on time. Prints the time taken as `measured: <what>: <time>` either way,
/// the figure the reliability table quotes, and returns it.
#[track_caller]
pub fn assert_took_less_than(limit: Duration, started: Instant, what: &str) -> Duration {
    let took = started.elapsed();
    eprintln!("measured: {what}: {took:?}");
    assert!(
        took < limit,
        "{what} took {took:?}, not less than {limit:?}"
    );
    took
}

/// The Prometheus text a service serves on `addr` (its ops address).
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let url = format!("http://{addr}/metrics");
    let scraped = async { reqwest::get(&url).await?.text().await };
    match scraped.await {
        Ok(text) => text,
        Err(e) => panic!("cannot scrape {url}: {e}"),
    }
}

/// The sum of the samples of metric `name` in a Prometheus text scrape whose line contains
/// every fragment in `labels` (`&[]` for all of them).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let (head, _) = l.split_once(' ').unwrap_or((l, ""));
            (head == name || head.starts_with(&format!("{name}{{")))
                && labels.iter().all(|f| l.contains(f))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends `kill -<name>` (`STOP`, `CONT`, …) to process `pid`: a stopped server keeps its
/// connections open and answers nothing, as a hung one does, until it is continued. Tests run
/// as root beside their servers, so they may signal PostgreSQL's processes too.
pub fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -{name} {pid}");
}

/// Stops process `pid` (SIGSTOP) and waits until every thread of it has stopped. `kill`
/// returns once the signal is sent: a thread busy in the kernel (a server's fsync on a loaded
/// machine) stops only when it comes back, and meanwhile it may still answer a peer, such as a
/// replica acknowledging what a test meant it never to see. Where `/proc` cannot tell (not
/// Linux), the signal alone.
pub fn stop_process(pid: u32) {
    signal(pid, "STOP");
    let stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut all = true;
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // `pid (comm) S ...`: the state follows the last `)`.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            all &= matches!(state, 'T' | 't');
        }
        Some(all)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stopped() == Some(false) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not stop within 10 s of SIGSTOP"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A TCP port on 127.0.0.1 nothing listens on right now: see [`free_ports`].
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different TCP ports on 127.0.0.1 nothing listens on right now, below the kernel's
/// range of ephemeral ports. A port of that range, once released, can become the source port
/// of any outgoing connection: another test's, or a client reconnecting to that very port,
/// which then connects to itself while no server listens there. A server started on the port
/// afterwards cannot bind it. Below the range, only another test picking the same port at
/// random can take it.
pub fn free_ports(n: usize) -> Vec<u16> {
    const FLOOR: u16 = 20_000;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let mut held = Vec::new();
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        // Too narrow a gap below the range (or no luck): any port the kernel picks.
        let port = if ephemeral_from > FLOOR + 1_000 && tries < 1_000 {
            rand::random_range(FLOOR..ephemeral_from)
        } else {
            0
        };
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

/// The tests' own address, 127.0.0.1, as the one trusted proxy: the `X-Forwarded-For` a test
/// sends then names the client, as a real proxy's would.
pub fn loopback_proxy() -> pulse_common::client_addr::TrustedProxies {
    match pulse_common::client_addr::parse_trusted("127.0.0.1") {
        Ok(proxies) => proxies,
        Err(e) => panic!("the loopback address does not parse as a proxy: {e}"),
    }
}

/// A service configuration parsed from `args` (the first is the program name) the way its
/// binary parses it, defaults and environment included.
pub fn parse_config<T: clap::Args>(args: &[&str]) -> T {
    match try_parse_config(args) {
        Ok(config) => config,
        Err(e) => panic!("a test configuration does not parse: {e}"),
    }
}

/// [`parse_config`], giving clap's message when `args` do not parse: for tests of what a
/// wrong setting is told.
pub fn try_parse_config<T: clap::Args>(args: &[&str]) -> Result<T, String> {
    #[derive(clap::Parser)]
    struct Cli<T: clap::Args> {
        #[command(flatten)]
        config: T,
    }
    <Cli<T> as clap::Parser>::try_parse_from(args)
        .map(|cli| cli.config)
        .map_err(|e| e.to_string())
}

/// The environment variables of `T` that may hold a secret (a URL with a password in it, a
/// secret, a token, a password) whose value `--help` would print when it is set: clap shows
/// an argument's environment value in the help unless told to hide it.
pub fn secrets_shown_in_help<T: clap::Args>() -> Vec<String> {
    let command = T::augment_args(clap::Command::new("config"));
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_env_values_set())
        .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned))
        .filter(|name| {
            name.ends_with("_URL")
                || ["SECRET", "TOKEN", "PASSWORD"]
                    .iter()
                    .any(|s| name.contains(s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_matching_samples_only() {
        let scrape = "# HELP a_total x\na_total{k=\"1\"} 2\na_total{k=\"2\"} 3\na_totals 100\n";
        assert_eq!(metric(scrape, "a_total", &[]), 5.0);
        assert_eq!(metric(scrape, "a_total", &["k=\"2\""]), 3.0);
        assert_eq!(metric(scrape, "b", &[]), 0.0);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("t"), unique("t"));
        assert!(unique("t").starts_with("t-"));
    }

    #[derive(clap::Args)]
    struct Example {
        #[arg(long, default_value_t = 3)]
        count: u32,
    }

    #[test]
    fn parses_a_flattened_configuration() {
        assert_eq!(parse_config::<Example>(&["x"]).count, 3);
        assert_eq!(parse_config::<Example>(&["x", "--count", "7"]).count, 7);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never")]
    async fn eventually_fails_at_the_deadline() {
        eventually("never", Duration::from_millis(60), || async { false }).await;
    }
}
