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
