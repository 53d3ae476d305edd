//! Real `pulse-poller` processes: active/standby takeover and trace export.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use pulse_test_support::proxy::{Link, Proxy};
use pulse_test_support::through;

use crate::helpers::*;
use crate::netns::Lab;

struct Process {
    child: Child,
    port: u16,
}

fn start(db: &ScratchDb, extra_env: &[(&str, String)]) -> Process {
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

/// Two pollers of `db`: the first (with `first_env`) active, the second on standby.
async fn active_and_standby(db: &ScratchDb, first_env: &[(&str, String)]) -> (Process, Process) {
    let first = start(db, first_env);
    eventually("first poller active", Duration::from_secs(20), || async {
        role(&first).await.as_deref() == Some("active")
    })
    .await;
    let second = start(db, &[]);
    eventually(
        "second poller on standby",
        Duration::from_secs(20),
        || async { role(&second).await.as_deref() == Some("standby") },
    )
    .await;
    (first, second)
}

/// After a handover: an alert opened now reaches `alerts` within `within`, in a snapshot
/// numbered after `before` (the last one the old leader published).
async fn assert_the_new_leader_publishes(
    db: &ScratchDb,
    tenant: &str,
    alerts: &mut Sub,
    before: &Value,
    within: Duration,
) {
    let id = db.open_alert(tenant, "dev-1", "after the handover").await;
    let after = alerts.until(within, |v| alert_ids(v).contains(&id)).await;
    assert!(
        after["seq"].as_u64().unwrap() > before["seq"].as_u64().unwrap(),
        "seq must keep increasing across a handover"
    );
}

#[tokio::test]
async fn the_standby_takes_over_within_seconds_when_the_active_dies() {
    let (db, tenant, [mut alerts]) = watched_tenant("failover", 1, ["alerts"]).await;

    let (mut first, second) = active_and_standby(&db, &[]).await;
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
    assert_took_less_than(
        Duration::from_secs(5),
        killed,
        "active poller SIGKILLed -> standby active",
    );

    assert_the_new_leader_publishes(&db, &tenant, &mut alerts, &before, Duration::from_secs(5))
        .await;
    drop(second);
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

    let (db, tenant) = db_with_tenant("traced", 1).await;
    let client = pulse_test_support::nats::shared().await;
    let mut sub = subscribed(&client, format!("pulse.v1.{tenant}.alerts")).await;
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
}

#[tokio::test]
async fn a_partitioned_leader_steps_down_before_a_new_one_takes_over() {
    let (db, tenant, [mut alerts]) = watched_tenant("partition", 1, ["alerts"]).await;
    let (proxied_url, upstream) = through(&db.url, 0);
    let proxy = Proxy::to(upstream).await;
    let (proxied_url, _) = through(&proxied_url, proxy.port);

    // The first poller reaches PostgreSQL only through the proxy.
    let (first, second) = active_and_standby(&db, &[("DATABASE_URL", proxied_url)]).await;
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
    assert_the_new_leader_publishes(&db, &tenant, &mut alerts, &before, Duration::from_secs(10))
        .await;
    drop((first, second));
}

/// An active poller that keeps PostgreSQL but loses NATS (a network policy, revoked
/// credentials, a partition between it and NATS alone) hands over to a standby that reaches
/// NATS, and does not take the lock back while it cannot publish.
#[tokio::test]
async fn a_leader_that_loses_nats_alone_hands_over_to_a_standby_that_reaches_it() {
    let (db, tenant, [mut alerts]) = watched_tenant("natsgone", 1, ["alerts"]).await;
    let proxy = Proxy::to(nats_url().trim_start_matches("nats://").to_owned()).await;
    let proxied = format!("nats://127.0.0.1:{}", proxy.port);
    let (first, second) = active_and_standby(&db, &[("NATS_URL", proxied)]).await;
    let before = alerts.until(Duration::from_secs(10), |_| true).await;

    // The first poller's NATS connections are closed, and new ones too.
    proxy.set(Link::Cut);
    let cut = Instant::now();
    eventually("second poller active", Duration::from_secs(30), || async {
        let (first, second) = (role(&first).await, role(&second).await);
        assert_not_both_active(first.as_deref(), second.as_deref(), cut.elapsed());
        second.as_deref() == Some("active")
    })
    .await;
    // After NATS_AWAY_STEP_DOWN (10 s) without NATS, and the standby's next try (200 ms).
    let took = cut.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(15)).contains(&took),
        "handed over after {took:?}"
    );
    assert_eq!(role(&first).await.as_deref(), Some("standby"));
    assert_the_new_leader_publishes(&db, &tenant, &mut alerts, &before, Duration::from_secs(10))
        .await;

    // Its NATS back, the first stays on standby: the lock is held.
    proxy.set(Link::Open);
    eventually(
        "first poller ready again",
        Duration::from_secs(20),
        || async {
            reqwest::get(format!("http://127.0.0.1:{}/readyz", first.port))
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert_eq!(role(&first).await.as_deref(), Some("standby"));
    assert_eq!(role(&second).await.as_deref(), Some("active"));
    drop((first, second));
}

#[tokio::test]
async fn a_deposed_leaders_late_publishes_do_not_replace_its_successors_snapshots() {
    let (db, tenant) = db_with_tenant("late", 1).await;
    let subject = format!("pulse.v1.{tenant}.alerts");
    let mut alerts = subscribe(&subject).await;
    // The first poller reaches PostgreSQL and NATS only through proxies.
    let (db_url, db_upstream) = through(&db.url, 0);
    let db_proxy = Proxy::to(db_upstream).await;
    let (db_url, _) = through(&db_url, db_proxy.port);
    let nats_proxy = Proxy::to(nats_url().trim_start_matches("nats://").to_owned()).await;
    let nats = format!("nats://127.0.0.1:{}", nats_proxy.port);
    let (first, second) =
        active_and_standby(&db, &[("DATABASE_URL", db_url), ("NATS_URL", nats)]).await;
    alerts.until(Duration::from_secs(10), |_| true).await;
    // Its first sync is over (the fleet went out after the alerts): from now on it publishes
    // what changes.
    eventually(
        "the first poller's fleet published",
        Duration::from_secs(10),
        || async {
            metric(
                &metrics_of(&first).await,
                "pulse_poller_publishes_total",
                &["fleet"],
            ) >= 1.0
        },
    )
    .await;

    // The first poller's NATS link goes silent (nothing closed): the snapshot it publishes for
    // a new alert is held on the way, and its acknowledgement never comes.
    let publish_errors = || async {
        metric(
            &metrics_of(&first).await,
            "pulse_poller_errors_total",
            &["stage=\"publish\""],
        )
    };
    let errors_before = publish_errors().await;
    nats_proxy.set(Link::Frozen);
    let late = db
        .open_alert(&tenant, "dev-1", "published into the partition")
        .await;
    // An event written meanwhile waits in the outbox: the first poller reports it waiting.
    let backlog = || async { metric(&metrics_of(&first).await, "pulse_poller_relay_backlog", &[]) };
    exec(&db, "SELECT pulse_emit_event($1, 'orders', 'e')", &tenant).await;
    eventually(
        "the first poller's publish timed out, its event waiting",
        Duration::from_secs(20),
        || async { publish_errors().await > errors_before && backlog().await >= 1.0 },
    )
    .await;

    // Then PostgreSQL is cut off too: it steps down, and the second poller takes over and
    // publishes the newest state, without the late alert.
    db_proxy.set(Link::Frozen);
    eventually(
        "the first poller steps down",
        Duration::from_secs(10),
        || async { role(&first).await.as_deref() == Some("standby") },
    )
    .await;
    // The outbox is the next active poller's to report; a standby's stale backlog would look
    // like a relay that is stuck.
    eventually(
        "the standby reports no backlog",
        Duration::from_secs(5),
        || async { backlog().await == 0.0 },
    )
    .await;
    db_proxy.set(Link::Cut);
    eventually("second poller active", Duration::from_secs(20), || async {
        role(&second).await.as_deref() == Some("active")
    })
    .await;
    db.close_alert(late).await;
    let newest = db.open_alert(&tenant, "dev-1", "after the handover").await;
    let current = alerts
        .until(Duration::from_secs(10), |v| alert_ids(v) == [newest])
        .await;
    let current_seq = current["seq"].as_u64().unwrap();
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    assert_eq!(
        stored_alerts(&js, &subject).await,
        (current_seq, vec![newest])
    );

    // The partition heals: the held publish arrives, older than what subscribers have.
    nats_proxy.set(Link::Open);
    let stale = alerts.lists_alert(late, Duration::from_secs(15)).await;
    assert!(
        stale["seq"].as_u64().unwrap() < current_seq,
        "the late snapshot is numbered before the successor's: {stale} after {current}"
    );
    // The stream keeps the successor's state: a gateway or service reading the current value
    // now gets the newest state, not the deposed leader's (the successor, seeing the late
    // snapshot go by, publishes its state again: the same alerts, a newer `seq`).
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let (seq, ids) = stored_alerts(&js, &subject).await;
        assert!(
            seq >= current_seq && ids == [newest],
            "the state stream's current value was replaced by the deposed leader's late publish: \
             {ids:?} at seq {seq}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((first, second));
}

/// An active poller of a new tenant with one device, and a subscriber of the tenant's alerts
/// that got the snapshot listing the one alert opened: that alert's id and the snapshot's `seq`.
async fn one_open_alert_published(
    label: &str,
) -> ((PollerHandle, ScratchDb), String, Sub, i64, u64) {
    let (db, tenant) = db_with_tenant(label, 1).await;
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;
    let poller = spawn_active(config_with(&db, &[])).await;
    let open = db.open_alert(&tenant, "dev-1", "open").await;
    let current = alerts
        .until(Duration::from_secs(10), |v| alert_ids(v) == [open])
        .await;
    let seq = current["seq"].as_u64().unwrap();
    ((poller, db), tenant, alerts, open, seq)
}

/// A snapshot the fence cannot keep out: a deposed poller's first publish of a subject in its
/// activation, which has nothing to expect, arriving late with an older `seq` and stored as the
/// subject's current value. The active poller sees it go by and publishes its state again at
/// once, newer, over it; a quiet tenant's value would otherwise stay the stale one for good.
#[tokio::test]
async fn a_late_snapshot_the_fence_cannot_refuse_is_replaced_at_once() {
    let (_poller, tenant, mut alerts, open, seq) = one_open_alert_published("unfenced").await;
    // The late one: no alerts, numbered before the current one, stored without expectation.
    let js = stored_stale(&tenant, seq - 1).await;
    // Published again, newer: refused first (the stream's last message is not the poller's
    // own any more; subscribers see it go by) and, the late one being older, sent again over it.
    stored_again_above(&js, &tenant, &mut alerts, open, seq).await;
}

/// Stores an alerts snapshot of `tenant` listing none, numbered `seq`, as a deposed poller's
/// first publish of the subject would be (no expectation); a JetStream context on the server.
async fn stored_stale(tenant: &str, seq: u64) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", seq.to_string().as_str());
    let stale = json!({"type": "alerts", "tenant_id": tenant, "seq": seq, "alerts": []});
    js.publish_with_headers(
        format!("pulse.v1.{tenant}.alerts"),
        headers,
        stale.to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js
}

/// Waits for the current state (alert `open` alone) published again above `above`, then for
/// it stored as the subject's current value.
async fn stored_again_above(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    alerts: &mut Sub,
    open: i64,
    above: u64,
) {
    let again = alerts
        .until(Duration::from_secs(5), |v| {
            alert_ids(v) == [open] && v["seq"].as_u64() > Some(above)
        })
        .await;
    let again = (again["seq"].as_u64().unwrap(), vec![open]);
    let subject = format!("pulse.v1.{tenant}.alerts");
    eventually(
        "the current state stored again, above the stale one",
        Duration::from_secs(5),
        || async { stored_alerts(js, &subject).await == again },
    )
    .await;
}

/// A snapshot numbered far above the poller's clock that goes by without being stored (a
/// deposed poller's, its clock ahead, refused by the fence): the poller's next publish looks
/// late beside it, and is published again above it, once, not again and again.
#[tokio::test]
async fn a_snapshot_numbered_above_the_pollers_clock_does_not_make_it_publish_in_a_loop() {
    let ((poller, db), tenant, mut alerts, first, seq) = one_open_alert_published("ahead").await;
    let subject = format!("pulse.v1.{tenant}.alerts");
    // A minute ahead: the poller's clock stays ahead of the wall clock no longer than that.
    let ahead = seq + 60_000_000;
    let nats = pulse_test_support::nats::shared().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", ahead.to_string().as_str());
    // Refused by the stream, as the fence refuses a deposed poller's: subscribers get it all
    // the same.
    headers.insert("Nats-Expected-Last-Subject-Sequence", "1");
    let body = json!({"type": "alerts", "tenant_id": tenant, "seq": ahead, "alerts": []});
    nats.publish_with_headers(subject.clone(), headers, body.to_string().into())
        .await
        .unwrap();
    nats.flush().await.unwrap();

    let second = db.open_alert(&tenant, "dev-1", "second").await;
    alerts
        .until(Duration::from_secs(10), |v| {
            let mut ids = alert_ids(v);
            ids.sort_unstable();
            ids == [first, second] && v["seq"].as_u64() > Some(ahead)
        })
        .await;
    // Then quiet within a couple more (a loop would publish the subject tens of times a
    // second), each newer still.
    let mut more = 0;
    while let Some((_, v)) = alerts.next_within(Duration::from_millis(1500)).await {
        more += 1;
        assert!(more <= 2, "published again and again: {v}");
        assert!(v["seq"].as_u64() > Some(ahead), "{v}");
    }
    drop(poller);
}

/// A snapshot numbered above the poller's clock, stored (a deposed poller's first publish of
/// the subject in its activation, its clock ahead by more than the handover took), on a quiet
/// tenant: the active poller publishes its state again at once, above it. Before, nothing did
/// until the tenant changed: its stale content was the subject's current value, for good.
#[tokio::test]
async fn a_stored_snapshot_numbered_above_the_pollers_clock_is_replaced_at_once() {
    let ((poller, _db), tenant, mut alerts, open, seq) =
        one_open_alert_published("aheadstored").await;
    let ahead = seq + 60_000_000;
    let js = stored_stale(&tenant, ahead).await;
    stored_again_above(&js, &tenant, &mut alerts, open, ahead).await;
    drop(poller);
}

/// Fails if both pollers said they were active, `now` after the cut.
fn assert_not_both_active(first_role: Option<&str>, second_role: Option<&str>, now: Duration) {
    assert!(
        !(second_role == Some("active") && first_role == Some("active")),
        "both pollers active at once, {now:?} after the cut"
    );
}

async fn metrics_of(p: &Process) -> String {
    match reqwest::get(format!("http://127.0.0.1:{}/metrics", p.port)).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The backend holding the leadership lock in `pool`'s database: its pid, client port, and
/// when its current (or latest) statement started, in seconds since the epoch.
async fn lock_holder(pool: &PgPool) -> Option<(i32, u16, f64)> {
    let row: Option<(i32, i32, f64)> = sqlx::query_as(
        "SELECT a.pid, a.client_port, extract(epoch FROM a.query_start)::float8 \
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
    )
    .bind(pulse_poller::leader::LOCK_KEY)
    .fetch_optional(pool)
    .await
    .unwrap();
    row.map(|(pid, port, started)| (pid, port as u16, started))
}

async fn backend_exists(pool: &PgPool, pid: i32) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// One message published for the tenant, and when it arrived.
struct Recorded {
    at: Instant,
    subject: String,
    body: Value,
}

impl Recorded {
    /// Alerts, fleet or telemetry: only the newest value matters, and `seq` orders them.
    fn is_snapshot(&self) -> bool {
        pulse_proto::Subject::parse(&self.subject).is_some_and(|s| s.is_snapshot())
    }
}

/// Everything published on a tenant's subjects, in order of arrival.
struct Recorder {
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(tenant: &str) -> Recorder {
        let client = pulse_test_support::nats::shared().await;
        let mut sub = subscribed(&client, format!("pulse.v1.{tenant}.>")).await;
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let into = Arc::clone(&log);
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(m) = sub.next().await {
                let body = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                into.lock().push(Recorded {
                    at: Instant::now(),
                    subject: m.subject.to_string(),
                    body,
                });
            }
        });
        Recorder { log, task }
    }

    async fn wait_for(&self, what: &str, within: Duration, want: impl Fn(&str, &Value) -> bool) {
        eventually(what, within, || {
            let found = self.log.lock().iter().any(|m| want(&m.subject, &m.body));
            async move { found }
        })
        .await;
    }

    /// Messages that arrived within `from..to`.
    fn between(&self, from: Instant, to: Instant) -> Vec<String> {
        self.log
            .lock()
            .iter()
            .filter(|m| m.at > from && m.at < to)
            .map(|m| format!("{} seq {}", m.subject, m.body["seq"]))
            .collect()
    }

    /// When the first snapshot with a `seq` above every one received before `after` arrived.
    fn first_newer_snapshot(&self, after: Instant) -> Option<Instant> {
        let log = self.log.lock();
        let snapshots = || log.iter().filter(|m| m.is_snapshot());
        let newest_before = snapshots()
            .filter(|m| m.at <= after)
            .filter_map(|m| m.body["seq"].as_u64())
            .max()?;
        snapshots()
            .find(|m| m.at > after && m.body["seq"].as_u64() > Some(newest_before))
            .map(|m| m.at)
    }

    /// When the first snapshot with a `seq` above every one received before `after` arrived;
    /// waits for it up to `within`.
    async fn first_newer_snapshot_within(&self, after: Instant, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.first_newer_snapshot(after) {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot newer than those before the fault within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every snapshot subject's `seq`s rose with every message: no subscriber was ever handed
    /// an older value after a newer one.
    fn assert_seqs_never_went_back(&self) {
        let log = self.log.lock();
        let mut newest = std::collections::HashMap::<&str, u64>::new();
        for m in log.iter().filter(|m| m.is_snapshot()) {
            let seq = m.body["seq"].as_u64().expect("a snapshot without seq");
            if let Some(prev) = newest.insert(&m.subject, seq) {
                assert!(seq > prev, "{}: seq {seq} after {prev}", m.subject);
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Until `stop`: every 100 ms an event on topic `ticks` and a telemetry reading of `dev-1`
/// `{"n": i}`, so an active poller always has something to publish. Returns how many of each.
fn keep_writing(
    db: &ScratchDb,
    tenant: &str,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<u64> {
    let (pool, tenant) = (db.pool.clone(), tenant.to_owned());
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.is_cancelled() {
            n += 1;
            sqlx::query("SELECT pulse_emit_event($1, 'ticks', 'test:tick', $2)")
                .bind(&tenant)
                .bind(json!({ "n": n }))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
                 VALUES ($1, 'dev-1', now(), $2)",
            )
            .bind(&tenant)
            .bind(json!({ "n": n }))
            .execute(&pool)
            .await
            .unwrap();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = stop.cancelled() => {}
            }
        }
        n
    })
}

/// The stage of a handover: an active and a standby poller of a database while a tenant's
/// data keeps changing ([`keep_writing`]), everything published recorded from before the
/// first publication on.
struct Handover {
    tenant: String,
    recorder: Recorder,
    first: Process,
    second: Process,
    stop: CancellationToken,
    writer: tokio::task::JoinHandle<u64>,
}

impl Handover {
    /// Sets the stage on `db` for a new tenant named after `label`; returns once the active
    /// poller published a reading.
    async fn start(db: &ScratchDb, label: &str) -> Handover {
        let tenant = db.tenant(label, 1).await;
        let recorder = Recorder::start(&tenant).await;
        let (first, second) = active_and_standby(db, &[]).await;
        let stop = CancellationToken::new();
        let writer = keep_writing(db, &tenant, stop.clone());
        recorder
            .wait_for("a reading published", Duration::from_secs(10), |s, _| {
                s.ends_with(".telemetry")
            })
            .await;
        Handover {
            tenant,
            recorder,
            first,
            second,
            stop,
            writer,
        }
    }

    /// After the handover: the writes stop, and the newest of everything reaches the
    /// subscribers (alerts, telemetry) and the events stream (each event once, in order).
    /// Both pollers are stopped after.
    async fn assert_ends_on_the_newest_state(self, db: &ScratchDb) {
        self.stop.cancel();
        let written = self.writer.await.unwrap();
        let (tenant, recorder) = (self.tenant, self.recorder);
        let alert = db.open_alert(&tenant, "dev-1", "after the handover").await;
        recorder
            .wait_for(
                "the newest alerts snapshot",
                Duration::from_secs(10),
                |s, v| s.ends_with(".alerts") && alert_ids(v).contains(&alert),
            )
            .await;
        recorder
            .wait_for("the newest reading", Duration::from_secs(10), |s, v| {
                s.ends_with(".telemetry") && v["data"]["metrics"]["n"] == written
            })
            .await;
        let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
        let subject = format!("pulse.v1.{tenant}.events.ticks");
        let want: Vec<u64> = (1..=written).collect();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got != want && Instant::now() < deadline {
            got = stored_events(&js, &subject)
                .await
                .iter()
                .map(|m| event_parts(Some(&m.headers), &m.payload).0)
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            got, want,
            "PULSE_EVENTS: events missing, repeated or out of order"
        );
        recorder.assert_seqs_never_went_back();
        drop((self.first, self.second));
    }
}

#[tokio::test]
async fn a_leader_whose_lock_connection_alone_is_cut_steps_down_at_once() {
    let db = ScratchDb::migrated("poller").await;
    let handover = Handover::start(&db, "lockcut").await;
    let (first, second, recorder) = (&handover.first, &handover.second, &handover.recorder);

    // Only the lock's connection is cut (its server process ended, as by an administrator or
    // a script reaping connections), just after the holder's latest check began: the worst
    // moment for a holder that looks at its connection only now and then. Every other
    // connection of the poller keeps working, and the lock is free at once, for whoever asks
    // first.
    let (pid, _, started) = lock_holder(&db.pool).await.expect("nobody holds the lock");
    eventually(
        "the holder's next lock check",
        Duration::from_secs(5),
        || async { lock_holder(&db.pool).await.is_some_and(|h| h.2 > started) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(terminated);
    let cut = Instant::now();

    let mut stepped_down = None;
    let mut taken_over = None;
    while cut.elapsed() < Duration::from_secs(10) {
        // The second is read first: once active it stays so, so the first still active
        // after it means both at once.
        let second_role = role(second).await;
        let first_metrics = metrics_of(first).await;
        let first_role = role(first).await;
        let now = cut.elapsed();
        assert_not_both_active(first_role.as_deref(), second_role.as_deref(), now);
        // Counted as it steps down; it may take the free lock again a moment later.
        if stepped_down.is_none()
            && metric(&first_metrics, "pulse_poller_errors_total", &["leadership"]) >= 1.0
        {
            stepped_down = Some(now);
        }
        if stepped_down.is_some() && taken_over.is_none() {
            if first_role.as_deref() == Some("active") {
                taken_over = Some((now, "first"));
            } else if second_role.as_deref() == Some("active") {
                taken_over = Some((now, "second"));
            }
        }
        // Watched a while longer, for a second leader arriving late.
        if taken_over.is_some_and(|(t, _)| now > t + Duration::from_secs(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stepped_down = stepped_down.expect("the first poller never noticed its lock was gone");
    let (taken_over, by) = taken_over.expect("nobody took over");
    let first_snapshot = recorder
        .first_newer_snapshot_within(cut, Duration::from_secs(5))
        .await
        - cut;
    eprintln!(
        "lock connection cut: stepped down after {stepped_down:?}, {by} poller active after \
         {taken_over:?}, first newer snapshot after {first_snapshot:?}"
    );
    assert!(
        stepped_down < Duration::from_millis(500),
        "stepped down {stepped_down:?} after its lock connection was cut, not at once"
    );
    assert!(
        taken_over < Duration::from_secs(3),
        "took over after {taken_over:?}"
    );
    handover.assert_ends_on_the_newest_state(&db).await;
}

#[tokio::test]
async fn a_black_holed_lock_connection_is_dropped_by_the_server_after_the_leader_stepped_down() {
    let (lab, db) = Lab::start().await;
    let handover = Handover::start(&db, "blackhole").await;
    let (first, second, recorder) = (&handover.first, &handover.second, &handover.recorder);

    // From now on the lock connection's packets vanish, both ways; nothing is closed, and
    // every other connection (the first poller's pool included) keeps working.
    let (pid, port, _) = lock_holder(&db.pool).await.expect("nobody holds the lock");
    lab.black_hole(port);
    let cut = Instant::now();

    let (mut stepped_down, mut released, mut taken_over) = (None, None, None);
    // The latest moment the old lock connection was seen alive.
    let mut held = Duration::ZERO;
    while cut.elapsed() < Duration::from_secs(25) {
        let second_role = role(second).await;
        let first_role = role(first).await;
        let now = cut.elapsed();
        assert_not_both_active(first_role.as_deref(), second_role.as_deref(), now);
        if stepped_down.is_none() && first_role.as_deref() == Some("standby") {
            stepped_down = Some(now);
        }
        if released.is_none() {
            if backend_exists(&db.pool, pid).await {
                held = now;
            } else {
                released = Some(now);
            }
        }
        if stepped_down.is_some() {
            if first_role.as_deref() == Some("active") {
                taken_over = Some((now, "first"));
            } else if second_role.as_deref() == Some("active") {
                taken_over = Some((now, "second"));
            }
        }
        if taken_over.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stepped_down = stepped_down.expect("the partitioned poller never stepped down");
    let released = released.expect("the server never dropped the lock connection");
    let (taken_over, by) = taken_over.expect("nobody took over");
    let quiet_from = cut + stepped_down + Duration::from_millis(100);
    let first_snapshot = recorder
        .first_newer_snapshot_within(quiet_from, Duration::from_secs(5))
        .await
        - cut;
    eprintln!(
        "lock connection black-holed: stepped down after {stepped_down:?}, server dropped the \
         lock after {released:?}, {by} poller active after {taken_over:?}, first newer \
         snapshot after {first_snapshot:?}"
    );
    // Its check times out after CHECK_EVERY (1 s) + CHECK_TIMEOUT (2 s).
    assert!(
        stepped_down < Duration::from_millis(4_500),
        "stepped down after {stepped_down:?}"
    );
    // The server's own TCP timers, not anything else, ended the connection, ~11 s after it
    // last heard from the poller: 10 s after data it sent went unacknowledged, or keepalives
    // every 2 s after 5 s of silence.
    assert!(
        released > stepped_down && released < Duration::from_secs(15),
        "the server dropped the lock after {released:?} (the poller stepped down after \
         {stepped_down:?})"
    );
    assert!(
        lab.server_log().contains("Connection timed out"),
        "the server's log does not say the connection timed out:\n{}",
        lab.server_log()
    );
    assert!(
        taken_over >= released,
        "took over at {taken_over:?}, before the lock was free"
    );
    // Nobody published after the step-down while the old connection still held the lock,
    // though the data kept changing.
    let silent = recorder.between(quiet_from, cut + held);
    assert!(
        silent.is_empty(),
        "published while nobody was active: {silent:?}"
    );
    handover.assert_ends_on_the_newest_state(&db).await;
}
