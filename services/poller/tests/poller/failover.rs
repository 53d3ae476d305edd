//! Real `pulse-poller` processes: active/standby takeover and trace export.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process {
    child: Child,
    port: u16,
}

fn start(db: &TestDb, extra_env: &[(&str, String)]) -> Process {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulse-poller"));
    cmd.env("DATABASE_URL", &db.url)
        .env("NATS_URL", nats_url())
        .env("PULSE_POLLER_ADDR", format!("127.0.0.1:{port}"))
        .env("PULSE_STANDBY_RETRY_MS", "200")
        .env("PULSE_TELEMETRY_POLL_MS", "100")
        .env("PULSE_POLL_SECONDS", "60")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Process {
        child: cmd.spawn().unwrap(),
        port,
    }
}

async fn role(p: &Process) -> Option<String> {
    let body: Value = reqwest::get(format!("http://127.0.0.1:{}/readyz", p.port))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["info"]["role"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn the_standby_takes_over_within_seconds_when_the_active_dies() {
    let db = TestDb::new().await;
    let tenant = db.tenant("failover", 1).await;
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;

    let mut first = start(&db, &[]);
    eventually("first poller active", Duration::from_secs(20), || async {
        role(&first).await.as_deref() == Some("active")
    })
    .await;
    let second = start(&db, &[]);
    eventually(
        "second poller on standby",
        Duration::from_secs(20),
        || async { role(&second).await.as_deref() == Some("standby") },
    )
    .await;
    // Never two publishing at once: the first is still the only active one.
    assert_eq!(role(&first).await.as_deref(), Some("active"));
    let before = alerts.until(Duration::from_secs(10), |_| true).await;

    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let killed = Instant::now();
    eventually("second poller active", Duration::from_secs(10), || async {
        role(&second).await.as_deref() == Some("active")
    })
    .await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );

    let id = db.open_alert(&tenant, "dev-1", "after failover").await;
    let after = alerts
        .until(Duration::from_secs(5), |v| alert_ids(v).contains(&id))
        .await;
    assert!(
        after["seq"].as_u64().unwrap() > before["seq"].as_u64().unwrap(),
        "seq must keep increasing across a failover"
    );
    drop(second);
    db.drop_now().await;
}

#[tokio::test]
async fn traces_are_exported_and_their_context_travels_in_nats_headers() {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<usize>(64);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.try_send(body.len());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::new().await;
    let tenant = db.tenant("traced", 1).await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let mut sub = client
        .subscribe(format!("pulse.v1.{tenant}.alerts"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let _poller = start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ],
    );
    let msg = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("no alerts snapshot")
        .unwrap();
    let headers = msg.headers.expect("published messages carry headers");
    let traceparent = headers
        .get("traceparent")
        .expect("traceparent header")
        .as_str();
    assert_eq!(traceparent.split('-').count(), 4, "{traceparent}");
    let bytes = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no OTLP export reached the collector")
        .unwrap();
    assert!(bytes > 0);
    db.drop_now().await;
}

/// What a [`Proxy`] does with the bytes between the poller and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Open,
    /// Nothing passes and nothing is closed: a partition, as seen from the poller.
    Frozen,
    /// Every connection is closed.
    Cut,
}

/// A TCP proxy to PostgreSQL that a test can freeze or cut.
struct Proxy {
    port: u16,
    link: tokio::sync::watch::Sender<Link>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: tokio::sync::watch::Receiver<Link>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Wait out a freeze; stop on a cut.
        loop {
            let now = *link.borrow_and_update();
            match now {
                Link::Open => break,
                Link::Cut => return,
                Link::Frozen => {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                // Bytes read just before a freeze are held until it ends.
                while *link.borrow() == Link::Frozen {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
                if *link.borrow() == Link::Cut || to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

impl Proxy {
    async fn to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, _) = tokio::sync::watch::channel(Link::Open);
        let links = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, links.subscribe()));
                tokio::spawn(pipe(server_read, client_write, links.subscribe()));
            }
        });
        Proxy { port, link }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// `url` with its `host:port` replaced by `127.0.0.1:<port>`, and the replaced `host:port`.
fn through(url: &str, port: u16) -> (String, String) {
    let at = url
        .find('@')
        .map_or(url.find("://").unwrap() + 3, |i| i + 1);
    let end = at + url[at..].find('/').unwrap();
    let upstream = url[at..end].to_owned();
    (
        format!("{}127.0.0.1:{port}{}", &url[..at], &url[end..]),
        upstream,
    )
}

#[tokio::test]
async fn a_partitioned_leader_steps_down_before_a_new_one_takes_over() {
    let db = TestDb::new().await;
    let tenant = db.tenant("partition", 1).await;
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;
    let (proxied_url, upstream) = through(&db.url, 0);
    let proxy = Proxy::to(upstream).await;
    let (proxied_url, _) = through(&proxied_url, proxy.port);

    // The first poller reaches PostgreSQL only through the proxy.
    let first = start(&db, &[("DATABASE_URL", proxied_url)]);
    eventually("first poller active", Duration::from_secs(20), || async {
        role(&first).await.as_deref() == Some("active")
    })
    .await;
    let second = start(&db, &[]);
    eventually("second on standby", Duration::from_secs(20), || async {
        role(&second).await.as_deref() == Some("standby")
    })
    .await;
    let before = alerts.until(Duration::from_secs(10), |_| true).await;

    // A partition: the first poller's packets go nowhere, and nothing is closed.
    proxy.set(Link::Frozen);
    let partitioned = Instant::now();
    eventually(
        "the partitioned poller steps down",
        Duration::from_secs(10),
        || async { role(&first).await.as_deref() == Some("standby") },
    )
    .await;
    let stepped_down = partitioned.elapsed();
    assert_eq!(
        role(&second).await.as_deref(),
        Some("standby"),
        "the lock is still held: nobody may have taken over yet"
    );

    // The connections are finally gone: PostgreSQL releases the lock, and the standby takes
    // over, after the old leader stopped.
    proxy.set(Link::Cut);
    eventually("second poller active", Duration::from_secs(20), || async {
        role(&second).await.as_deref() == Some("active")
    })
    .await;
    // Its lock check fails after CHECK_EVERY (1 s) + CHECK_TIMEOUT (2 s); nothing else may hold
    // the step-down back (tasks stuck on the same database, an unlock that cannot arrive).
    assert!(
        stepped_down < Duration::from_millis(4_500),
        "stepped down after {stepped_down:?}"
    );
    let id = db.open_alert(&tenant, "dev-1", "after the partition").await;
    let after = alerts
        .until(Duration::from_secs(10), |v| alert_ids(v).contains(&id))
        .await;
    assert!(after["seq"].as_u64().unwrap() > before["seq"].as_u64().unwrap());
    drop((first, second));
    db.drop_now().await;
}
