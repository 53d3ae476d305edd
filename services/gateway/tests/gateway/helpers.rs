//! Fixtures of the gateway's own tests: the configuration they share, NATS publishing as the
//! poller does, and the gateway binary as a process of its own; the rest is re-exported from
//! `pulse-test-support` so that the tests name everything through `helpers`.

use std::ops::RangeInclusive;
use std::time::Duration;

use pulse_gateway::GatewayConfig;
use serde_json::{Value, json};

pub use pulse_test_support::gateway::{Gateway, spawn as spawn_gateway};
pub use pulse_test_support::jwt::{SECRET, now, sign, viewer_token};
pub use pulse_test_support::nats::{
    PrivateNats, connect as connect_nats, shared as nats, start_server as start_nats_server,
    wait_for as wait_for_nats,
};
pub use pulse_test_support::ws::{Client, connect, connect_with};
pub use pulse_test_support::{
    ScratchDb, assert_took_less_than, eventually, free_port, loopback_proxy, metric, nats_url,
    throughout, unique,
};

/// How long a test waits for a message it expects.
pub const T: Duration = Duration::from_secs(5);

/// The gateway's configuration for these tests: no clock leeway, a one-second drain.
pub fn config() -> GatewayConfig {
    let mut c = pulse_test_support::gateway::config(&["--jwt-leeway-seconds", "0"]);
    c.drain = std::time::Duration::from_secs(1);
    c
}

/// Client queues of 200 events and 1 KiB socket write buffers: a client that stops reading is
/// soon far behind. 200 is above tokio's cooperative budget (128): the fan-out task yields
/// after at most that many messages in a row, so a client that reads as fast as it can is
/// never this far behind, however the scheduler interleaves the tasks.
pub fn small_client_buffers(c: &mut GatewayConfig) {
    c.client_queue_events = 200;
    c.ws_write_buffer_bytes = 1024;
}

/// A gateway with [`config`] adjusted by `configure` first.
pub async fn spawn_gateway_with(configure: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let mut config = config();
    configure(&mut config);
    spawn_gateway(config).await
}

/// `body` with its `seq` set, and the `Pulse-Seq` header the poller sends with it.
pub fn sequenced(seq: u64, body: Value) -> (async_nats::HeaderMap, bytes::Bytes) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", seq.to_string().as_str());
    let mut body = body;
    body["seq"] = json!(seq);
    (headers, body.to_string().into())
}

/// Publishes a snapshot-shaped message with a `Pulse-Seq` header, as the poller does.
pub async fn publish(nats: &async_nats::Client, subject: &str, seq: u64, body: Value) {
    let (headers, payload) = sequenced(seq, body);
    nats.publish_with_headers(subject.to_string(), headers, payload)
        .await
        .unwrap();
    nats.flush().await.unwrap();
}

/// Publishes through JetStream (retained in PULSE_STATE), creating the streams if needed.
pub async fn publish_retained(nats: &async_nats::Client, subject: &str, seq: u64, body: Value) {
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    publish_stored(&js, subject, seq, body).await;
}

/// [`publish`] through JetStream, into the streams as they are, once the stream has stored it.
pub async fn publish_stored(
    js: &async_nats::jetstream::Context,
    subject: &str,
    seq: u64,
    body: Value,
) {
    let (headers, payload) = sequenced(seq, body);
    js.publish_with_headers(subject.to_string(), headers, payload)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Stores an alerts snapshot of `tenant` marked `v` in PULSE_STATE, as the poller does: the
/// current value a subscriber then gets first.
pub async fn retain_alerts(nats: &async_nats::Client, tenant: &str, seq: u64, v: &str) {
    let subject = format!("pulse.v1.{tenant}.alerts");
    publish_retained(nats, &subject, seq, json!({"type": "alerts", "v": v})).await;
}

pub async fn ensure_streams(js: &async_nats::jetstream::Context) {
    ensure_streams_with(js, &[]).await;
}

/// Creates the streams with the poller's configuration plus `flags` (e.g. a per-topic cap).
pub async fn ensure_streams_with(js: &async_nats::jetstream::Context, flags: &[&str]) {
    let mut args = vec!["p", "--database-url", "postgres://x@localhost/x"];
    args.extend_from_slice(flags);
    let config: pulse_poller::PollerConfig = pulse_test_support::parse_config(&args);
    pulse_poller::streams::ensure(js, &config).await.unwrap();
}

/// Lists `devices` for `tenant` in the device registry, as the poller does for the devices in
/// its database; a gateway subscribes clients only to devices listed there.
pub async fn register_devices<D: AsRef<str>>(tenant: &str, devices: impl IntoIterator<Item = D>) {
    register_devices_on(&nats().await, tenant, devices).await;
}

/// [`register_devices`] through `nats`, with the poller's own code.
pub async fn register_devices_on<D: AsRef<str>>(
    nats: &async_nats::Client,
    tenant: &str,
    devices: impl IntoIterator<Item = D>,
) {
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    let mut registry = pulse_poller::registry::DeviceRegistry::open(&js, 1)
        .await
        .unwrap();
    let devices: Vec<D> = devices.into_iter().collect();
    let tenant = pulse_proto::TenantId::parse(tenant).unwrap();
    registry
        .sync(&tenant, devices.iter().map(AsRef::as_ref))
        .await
        .unwrap();
}

/// An event message as the poller relays it: stored in `PULSE_EVENTS` and sent live.
pub async fn publish_event(nats: &async_nats::Client, tenant: &str, topic: &str, seq: u64) {
    publish_retained(
        nats,
        &format!("pulse.v1.{tenant}.events.{topic}"),
        seq,
        json!({"type": "event", "tenant_id": tenant, "topic": topic, "event": "ticket:update", "payload": {"n": seq}}),
    )
    .await;
}

/// Sends event `seq` of `topic` over core NATS only, stored in no stream: the gateway cannot
/// read it back.
pub async fn publish_live_event(nats: &async_nats::Client, tenant: &str, topic: &str, seq: u64) {
    let subject = format!("pulse.v1.{tenant}.events.{topic}");
    publish(
        nats,
        &subject,
        seq,
        json!({"type": "event", "topic": topic}),
    )
    .await;
}

/// [`publish_event`] for each of `seqs`, in order.
pub async fn publish_events(
    nats: &async_nats::Client,
    tenant: &str,
    topic: &str,
    seqs: impl IntoIterator<Item = u64>,
) {
    for seq in seqs {
        publish_event(nats, tenant, topic, seq).await;
    }
}

/// Reads events of `topic` until `last`, failing on anything out of order, duplicated, or a
/// reset; returns the seqs seen.
pub async fn events_until(c: &mut Client, last: u64) -> Vec<u64> {
    events_within(c, last, T).await
}

/// [`events_until`], each event waited for up to `wait`.
pub async fn events_within(c: &mut Client, last: u64, wait: Duration) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    while seen.last().is_none_or(|&s| s < last) {
        let m = c
            .until(wait, |m| {
                m["type"] == "event" || m["type"] == "events_reset"
            })
            .await;
        assert_eq!(m["type"], "event", "unexpected {m}");
        let seq = m["seq"].as_u64().unwrap();
        if let Some(&prev) = seen.last() {
            assert_eq!(seq, prev + 1, "after {prev} came {seq}: {seen:?}");
        }
        seen.push(seq);
    }
    seen
}

/// Reads events until the last of `seqs` (failing as [`events_until`] does) and asserts that
/// they were exactly `seqs`, in order.
pub async fn assert_events(c: &mut Client, seqs: RangeInclusive<u64>) {
    let last = *seqs.end();
    assert_eq!(events_until(c, last).await, seqs.collect::<Vec<u64>>());
}

/// Waits until `GET http://{addr}{path}` answers with `status`.
pub async fn answers_with(addr: std::net::SocketAddr, path: &str, status: u16, within: Duration) {
    let url = format!("http://{addr}{path}");
    eventually(&format!("{url} answering {status}"), within, || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().as_u16() == status)
    })
    .await;
}

/// A viewer of `tenant` connected to the gateway on 127.0.0.1:`port` (one run as a process).
pub async fn viewer_on_port(port: u16, tenant: &str) -> Client {
    connect(&format!(
        "ws://127.0.0.1:{port}/api/v2/ws?token={}",
        viewer_token(tenant, 60)
    ))
    .await
}

/// `/readyz` of the gateway at `addr`, as JSON, with its status.
pub async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The WebSocket upgrade at `url` is answered with HTTP 503 and `Retry-After`: refused for now,
/// with when to try again.
pub async fn assert_upgrade_refused_for_now(url: &str) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            let after = r.headers().get("retry-after").map(|v| v.to_str());
            assert!(
                matches!(after, Some(Ok(s)) if s.parse::<u64>().is_ok_and(|n| n >= 1)),
                "{:?}",
                r.headers()
            );
        }
        other => panic!("expected HTTP 503, got {:?}", other.map(|_| "a WebSocket")),
    }
}

/// The real poller, run in this process until [`Poller::stop`].
pub struct Poller {
    /// Where its ops endpoints are.
    pub addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A service's `run(config, listener, shutdown)`, started in this process on a port of its
/// own: where it listens, the token that stops it, and its task.
pub async fn run_in_process<Fut>(
    run: impl FnOnce(tokio::net::TcpListener, tokio_util::sync::WaitForCancellationFutureOwned) -> Fut,
) -> (
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Fut::Output>,
)
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run(listener, stop.clone().cancelled_owned()));
    (addr, stop, task)
}

/// Starts the poller with `config`, its ops endpoints on a port of its own.
pub async fn spawn_poller(config: pulse_poller::PollerConfig) -> Poller {
    let (addr, stop, task) =
        run_in_process(|listener, stop| pulse_poller::run(config, listener, stop)).await;
    Poller { addr, stop, task }
}

impl Poller {
    /// Waits until the poller is ready and active: connected, its streams in place, its
    /// first snapshots on their way. On a NATS of the test's own the streams are created
    /// first, which a loaded machine may take seconds over.
    pub async fn wait_active(&self) {
        eventually(
            "poller ready and active",
            Duration::from_secs(30),
            || async {
                let (status, body) = readyz(self.addr).await;
                status == 200 && body["info"]["role"] == "active"
            },
        )
        .await;
    }

    /// Stops the poller, waiting up to 10 s for it to end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The gateway binary as its own process on `port` (on the shared NATS), with `envs` added;
/// returns once it is ready. Killed when dropped.
pub async fn spawn_gateway_process(port: u16, envs: &[(&str, &str)]) -> tokio::process::Child {
    spawn_gateway_process_logging(port, envs, None).await
}

/// [`spawn_gateway_process`], writing everything the process prints to `log` when given.
pub async fn spawn_gateway_process_logging(
    port: u16,
    envs: &[(&str, &str)],
    log: Option<std::fs::File>,
) -> tokio::process::Child {
    let (stdout, stderr) = match log {
        Some(file) => {
            let copy = file.try_clone().unwrap();
            (
                std::process::Stdio::from(file),
                std::process::Stdio::from(copy),
            )
        }
        None => (std::process::Stdio::null(), std::process::Stdio::null()),
    };
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pulse-gateway"));
    command
        .env("PULSE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("PULSE_JWT_SECRET", SECRET)
        .env("NATS_URL", nats_url())
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    // Ready where the ops endpoints are.
    let addr = match envs
        .iter()
        .find(|(var, _)| *var == "PULSE_GATEWAY_OPS_ADDR")
    {
        Some((_, ops)) => ops.parse().unwrap(),
        None => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    };
    answers_with(addr, "/readyz", 200, Duration::from_secs(20)).await;
    child
}
