//! Fixtures: gateways on port 0, tokens, WebSocket clients with deadlines, NATS publishing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use futures::{SinkExt as _, StreamExt as _};
use jsonwebtoken::{EncodingKey, Header, encode};
use pulse_gateway::GatewayConfig;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a message it expects.
pub const T: Duration = Duration::from_secs(5);

pub const SECRET: &str = "test-secret-test-secret-test-secret!";

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{:010x}", n & 0xff_ffff_ffff)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn sign(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A valid viewer token for `tenant`, expiring in `ttl` seconds.
pub fn token_for(tenant: &str, ttl: i64) -> String {
    sign(json!({
        "sub": "user-1", "email": "viewer@example.test", "tenant_id": tenant,
        "role": "customer_viewer", "exp": (now() as i64 + ttl),
    }))
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
}

pub fn config() -> GatewayConfig {
    let mut c = Cli::try_parse_from([
        "pulse-gateway",
        "--jwt-secret",
        SECRET,
        "--jwt-leeway-seconds",
        "0",
    ])
    .unwrap()
    .config;
    c.nats_url = nats_url();
    c.drain_seconds = 1;
    c
}

pub struct Gateway {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_gateway(config: GatewayConfig) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pulse_gateway::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let gw = Gateway {
        addr,
        stop,
        task: Some(task),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await
            && r.status().is_success()
        {
            return gw;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway not ready within 10 s");
}

impl Gateway {
    pub fn url(&self, token: &str) -> String {
        format!("ws://{}/api/v2/ws?token={token}", self.addr)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asks the gateway to drain, as SIGTERM does; returns its run result.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    pub async fn stopped(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("gateway did not stop")
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

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

pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
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

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server ended the connection with.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

pub async fn connect(url: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Client { ws }
}

/// Connects to `url` with extra request headers; returns the client and the response's
/// selected subprotocol.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> (Client, Option<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (Client { ws }, protocol)
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next text message as JSON; panics on close or timeout.
    pub async fn next(&mut self, within: Duration) -> Value {
        self.try_next(within)
            .await
            .unwrap_or_else(|| panic!("no message within {within:?}"))
    }

    pub async fn try_next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(c)) => panic!("closed unexpectedly: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("websocket error: {e}"),
            }
        }
    }

    /// Skips messages until one satisfies `want`.
    pub async fn until(&mut self, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .try_next(left)
                .await
                .unwrap_or_else(|| panic!("no matching message within {within:?}"));
            if want(&v) {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self, within: Duration) -> Closed {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("not closed within {within:?}"),
                Ok(None) => panic!("stream ended without a close frame"),
                Ok(Some(Ok(Message::Close(Some(CloseFrame { code, reason }))))) => {
                    return Closed {
                        code: code.into(),
                        reason: reason.to_string(),
                    };
                }
                Ok(Some(Ok(Message::Close(None)))) => panic!("close without a code"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("websocket error before close: {e}"),
            }
        }
    }

    /// Reads every event that was delivered before the connection ended, as a client
    /// processing its socket would: their seqs, and the close code (`None`: dropped).
    pub async fn events_until_closed(&mut self, within: Duration) -> (Vec<u64>, Option<u16>) {
        let deadline = Instant::now() + within;
        let mut seqs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("not closed within {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return (seqs, None),
                Ok(Some(Ok(Message::Close(frame)))) => return (seqs, frame.map(|f| f.code.into())),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "event" {
                        seqs.push(v["seq"].as_u64().unwrap());
                    }
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Reads until the connection ends: `Some(code)` for a close frame, `None` when it was
    /// dropped without one. Panics if it stays open past `within`.
    pub async fn closed_or_dropped(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("still open after {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn subscribe(&mut self, v: Value) -> Value {
        let mut request = v;
        request["action"] = json!("subscribe");
        self.send(request).await;
        self.until(Duration::from_secs(5), |m| {
            m["type"] == "subscribed" || m["type"] == "error"
        })
        .await
    }

    /// Subscribes and asserts the `subscribed` ack came within `limit`.
    pub async fn subscribe_within(&mut self, v: Value, limit: Duration) {
        let asked = Instant::now();
        let r = self.subscribe(v).await;
        assert_eq!(r["type"], "subscribed", "{r}");
        assert!(
            asked.elapsed() < limit,
            "the subscribe ack took {:?}",
            asked.elapsed()
        );
    }

    /// A round trip proving the connection is still usable.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"action": "ping"})).await;
        let pong = self
            .until(Duration::from_secs(5), |m| m["type"] == "pong")
            .await;
        assert_eq!(pong, json!({"type": "pong"}));
    }
}

/// Publishes a snapshot-shaped message with a `Pulse-Seq` header, as the poller does.
pub async fn publish(nats: &async_nats::Client, subject: &str, seq: u64, body: Value) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", seq.to_string().as_str());
    let mut body = body;
    body["seq"] = json!(seq);
    nats.publish_with_headers(subject.to_string(), headers, body.to_string().into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
}

/// Publishes through JetStream (retained in PULSE_STATE), creating the streams if needed.
pub async fn publish_retained(nats: &async_nats::Client, subject: &str, seq: u64, body: Value) {
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", seq.to_string().as_str());
    let mut body = body;
    body["seq"] = json!(seq);
    js.publish_with_headers(subject.to_string(), headers, body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[derive(clap::Parser)]
struct PollerCli {
    #[command(flatten)]
    config: pulse_poller::PollerConfig,
}

pub async fn ensure_streams(js: &async_nats::jetstream::Context) {
    ensure_streams_with(js, &[]).await;
}

/// Creates the streams with the poller's configuration plus `flags` (e.g. a per-topic cap).
pub async fn ensure_streams_with(js: &async_nats::jetstream::Context, flags: &[&str]) {
    let mut args = vec!["p", "--database-url", "postgres://x@localhost/x"];
    args.extend_from_slice(flags);
    let config = PollerCli::try_parse_from(args).unwrap().config;
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

/// Reads events of `topic` until `last`, failing on anything out of order, duplicated, or a
/// reset; returns the seqs seen.
pub async fn events_until(c: &mut Client, last: u64) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    while seen.last().is_none_or(|&s| s < last) {
        let m = c
            .until(T, |m| m["type"] == "event" || m["type"] == "events_reset")
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

pub async fn nats() -> async_nats::Client {
    async_nats::connect(nats_url()).await.unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a private nats-server on `port` (killed when dropped), for tests that stop it or
/// configure it. `envs` reach the server: its configuration may read them as `$NAME`.
pub fn start_nats_server(port: u16, args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    let bin = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("nats-server");
    tokio::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server must be installed (scripts/ensure-nats.sh installs it)")
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
    eventually("gateway ready", Duration::from_secs(20), || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    child
}

/// Waits until a NATS client can connect to `url` (credentials in the URL are sent).
pub async fn wait_for_nats(url: &str) {
    eventually("private NATS up", Duration::from_secs(10), || async move {
        connect_nats(url).await.is_ok()
    })
    .await;
}

/// Connects to NATS sending the credentials written in `url`, as the services do.
pub async fn connect_nats(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    pulse_common::nats::with_url_credentials(async_nats::ConnectOptions::new(), url)
        .connect(url)
        .await
}
