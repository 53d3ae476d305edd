//! Shared fixtures: a fresh database per test, unique tenant ids, an in-process poller on
//! port 0, and NATS subscribers with deadlines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use futures::StreamExt as _;
use pulse_poller::PollerConfig;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A short random token for names that must not collide between tests and runs.
pub fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{:010x}", n & 0xff_ffff_ffff)
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A database of its own, migrated, dropped by [`TestDb::drop_now`] (or by the next
/// `make test`, which drops leftovers).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = unique("pulse_t").replace('-', "_");
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
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        pulse_db::migrate(&pool).await.unwrap();
        TestDb { name, url, pool }
    }

    pub async fn drop_now(self) {
        self.pool.close().await;
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

    /// Creates a tenant with `devices` devices `dev-1`… on site `site-1`; returns its id.
    pub async fn tenant(&self, label: &str, devices: usize) -> String {
        let tenant = unique(label);
        sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)")
            .bind(&tenant)
            .execute(&self.pool)
            .await
            .unwrap();
        for i in 1..=devices {
            sqlx::query(
                "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
                 VALUES ($1, $2, 'site-1', 80)",
            )
            .bind(&tenant)
            .bind(format!("dev-{i}"))
            .execute(&self.pool)
            .await
            .unwrap();
        }
        tenant
    }

    pub async fn open_alert(&self, tenant: &str, device: &str, summary: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, $2, 'site-1', 'temp_high', 4, $3) RETURNING alert_id",
        )
        .bind(tenant)
        .bind(device)
        .bind(summary)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn close_alert(&self, alert_id: i64) {
        sqlx::query("UPDATE alerts SET status = 'CLOSED', closed_at = now() WHERE alert_id = $1")
            .bind(alert_id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    pub async fn reading(&self, tenant: &str, device: &str, metrics: Value) {
        sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ($1, $2, now(), $3)",
        )
        .bind(tenant)
        .bind(device)
        .bind(sqlx::types::Json(metrics))
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

#[derive(clap::Parser)]
struct ConfigCli {
    #[command(flatten)]
    config: PollerConfig,
}

/// A configuration for tests: fast telemetry, a slow safety net (so a fast delivery proves
/// NOTIFY works), everything else default.
pub fn config(db: &TestDb) -> PollerConfig {
    let mut c = ConfigCli::try_parse_from(["pulse-poller", "--database-url", &db.url])
        .unwrap()
        .config;
    c.nats_url = nats_url();
    c.poll_interval = std::time::Duration::from_secs(60);
    c.telemetry_interval = std::time::Duration::from_millis(50);
    c.standby_retry = std::time::Duration::from_millis(200);
    c
}

/// An in-process poller; stopped on drop.
pub struct PollerHandle {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_poller(config: PollerConfig) -> PollerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pulse_poller::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    PollerHandle {
        addr,
        stop,
        task: Some(task),
    }
}

impl PollerHandle {
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn ready(&self) -> Value {
        reqwest::get(format!("http://{}/readyz", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("poller did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for PollerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sum of a metric's samples whose line contains every fragment in `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `check` holds, polling every 50 ms; panics with `what` at the deadline.
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A NATS subscription that yields parsed JSON payloads.
pub struct Sub {
    inner: async_nats::Subscriber,
    _client: async_nats::Client,
}

pub async fn subscribe(subject: &str) -> Sub {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let inner = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    Sub {
        inner,
        _client: client,
    }
}

impl Sub {
    /// The next message within `within`, or `None`.
    pub async fn next_within(&mut self, within: Duration) -> Option<(String, Value)> {
        let msg = tokio::time::timeout(within, self.inner.next())
            .await
            .ok()??;
        let value = serde_json::from_slice(&msg.payload).unwrap();
        Some((msg.subject.to_string(), value))
    }

    /// Skips messages until one satisfies `want`; panics at the deadline.
    pub async fn until(&mut self, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some((_, v)) if want(&v) => return v,
                Some(_) => continue,
                None => panic!("no matching message within {within:?}"),
            }
        }
    }
}

/// Alert ids listed in an alerts snapshot.
pub fn alert_ids(snapshot: &Value) -> Vec<i64> {
    snapshot["alerts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["alert_id"].as_i64()).collect())
        .unwrap_or_default()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn nats_server_binary() -> String {
    for candidate in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    "nats-server".into()
}

/// A private nats-server with JetStream storing in `store`, for tests that stop it, once it
/// accepts connections; killed when dropped. Started again on the same port and store, it
/// comes back with what it had stored.
pub async fn start_nats(port: u16, store: &std::path::Path) -> tokio::process::Child {
    let child = tokio::process::Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server must be installed (run `make test`)");
    let url = format!("nats://127.0.0.1:{port}");
    eventually("private NATS up", Duration::from_secs(10), || {
        let url = url.clone();
        async move { async_nats::connect(url).await.is_ok() }
    })
    .await;
    child
}

/// Creates (or updates) the contract's streams with the default poller configuration.
pub async fn ensure_streams(js: &async_nats::jetstream::Context) {
    let c = ConfigCli::try_parse_from(["pulse-poller", "--database-url", "postgres://x@h/x"])
        .unwrap()
        .config;
    pulse_poller::streams::ensure(js, &c).await.unwrap();
}

/// Every message `PULSE_EVENTS` holds for `subject`, in stream order.
pub async fn stored_events(
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let stream = js
        .get_stream(pulse_proto::subject::EVENTS_STREAM)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        match stream
            .direct_get_next_for_subject(subject, Some(from))
            .await
        {
            Ok(m) => {
                from = m.sequence + 1;
                out.push(m);
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return out,
            Err(e) => panic!("cannot read {subject} from the events stream: {e}"),
        }
    }
}

/// The `Pulse-Seq` and `Nats-Msg-Id` headers and the JSON body of an event message.
pub fn event_parts(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> (u64, String, Value) {
    let headers = headers.expect("an event message without headers");
    let seq = headers
        .get("Pulse-Seq")
        .expect("no Pulse-Seq header")
        .as_str()
        .parse()
        .unwrap();
    let id = headers
        .get("Nats-Msg-Id")
        .expect("no Nats-Msg-Id header")
        .as_str()
        .to_owned();
    (seq, id, serde_json::from_slice(payload).unwrap())
}
