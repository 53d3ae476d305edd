//! Outages: the poller rides out NATS restarts and lost database connections.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_nats_restart_is_survived_and_state_republished() {
    let OnPrivateNats {
        mut nats,
        db,
        tenant,
        poller,
    } = on_private_nats("natsdown", 1).await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let mut alerts = subscribed(&client, format!("pulse.v1.{tenant}.alerts")).await;
    use futures::StreamExt as _;
    // The first snapshot may have been published before we subscribed; any alert write shows
    // the pipeline works before the outage.
    let id = db.open_alert(&tenant, "dev-1", "before outage").await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), alerts.next())
            .await
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        if alert_ids(&v).contains(&id) {
            break;
        }
    }

    nats.stop().await;
    poller.wait_nats_gone().await;
    // A change during the outage is not lost.
    let during = db.open_alert(&tenant, "dev-1", "during outage").await;

    let back = std::time::Instant::now();
    nats.start_again().await;
    poller
        .wait_readiness(
            "readiness true after NATS is back",
            Duration::from_secs(15),
            |r| r["ready"] == true,
        )
        .await;
    // Read from the stream, not from this test's subscription: the test's own client may
    // reconnect only after the poller has republished, and core NATS keeps nothing for it.
    let js = pulse_test_support::nats::checks(client.clone());
    let subject = format!("pulse.v1.{tenant}.alerts");
    // Well within one acknowledgement timeout (5 s): nothing the outage cut off is waited for.
    let what = "NATS started again -> snapshot with the change made during the outage";
    stored_within(&js, &subject, during, (back, Duration::from_secs(4)), what).await;
    let got = last_stored(&js, &subject).await.unwrap_or_default();
    assert!(alert_ids(&got).contains(&id));
    poller.stop().await;
}

#[tokio::test]
async fn lost_database_connections_are_survived() {
    let (db, tenant, [mut alerts]) = watched_tenant("pgdown", 1, ["alerts"]).await;
    let poller = spawn_poller(config(&db)).await;
    alerts.until(Duration::from_secs(10), |_| true).await;

    // Kill every connection to this database, as a PostgreSQL restart would.
    let admin = sqlx::PgPool::connect(&base_database_url()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
          WHERE datname = $1 AND pid <> pg_backend_pid()) k",
    )
    .bind(&db.name)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(
        killed >= 2,
        "expected the poller's connections, killed {killed}"
    );
    admin.close().await;
    let cut = std::time::Instant::now();

    poller
        .wait_readiness("active again", Duration::from_secs(15), |r| {
            r["info"]["role"] == "active"
        })
        .await;
    // The pool may hand out a connection that died; retry the write like any client would.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        let r = sqlx::query_scalar::<_, i64>(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, 'dev-1', 'site-1', 'x', 1, 'after') RETURNING alert_id",
        )
        .bind(&tenant)
        .fetch_one(&db.pool)
        .await;
        match r {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cannot write after the outage: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    alerts.lists_alert(id, Duration::from_secs(10)).await;
    eprintln!(
        "measured: backends terminated -> a change written after is published: {:?}",
        cut.elapsed()
    );
    let errors = poller.metric("pulse_poller_errors_total", &[]).await;
    assert!(
        errors >= 1.0,
        "the outage should be counted in pulse_poller_errors_total"
    );
    poller.stop().await;
}

/// A first start while NATS runs without JetStream (a cluster still electing, a server
/// without it enabled): the active poller says so in readiness, keeps trying, and publishes
/// once the streams can be made.
#[tokio::test]
async fn an_active_poller_waits_for_jetstream_and_says_so_in_readiness() {
    let mut nats = PrivateNats::without_jetstream().await;

    let (db, tenant) = db_with_tenant("nojs", 1).await;
    let poller = spawn_poller(config_on(&db, &nats)).await;
    poller
        .wait_active_and_waiting("waiting for JetStream", Duration::from_secs(15))
        .await;

    // JetStream arrives (the server restarted with it): streams made, snapshot published.
    nats.start_again().await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = pulse_test_support::nats::checks(client);
    poller
        .wait_readiness(
            "ready once JetStream is there",
            Duration::from_secs(20),
            |r| r["ready"] == true && r["info"]["streams"] == "ready",
        )
        .await;
    eventually(
        "the tenant's snapshot stored",
        Duration::from_secs(10),
        || async {
            let Ok(stream) = js.get_stream(pulse_proto::subject::STATE_STREAM).await else {
                return false;
            };
            stream
                .direct_get_last_for_subject(format!("pulse.v1.{tenant}.alerts"))
                .await
                .is_ok()
        },
    )
    .await;
    poller.stop().await;
}

#[tokio::test]
async fn the_poller_stops_promptly_while_nats_is_down() {
    let mut nats = PrivateNats::start().await;
    let db = ScratchDb::migrated("poller").await;
    let poller = spawn_poller(config_on(&db, &nats)).await;
    poller.wait_ready().await;
    nats.stop().await;
    poller.wait_nats_gone().await;
    // A stop must not wait for NATS to come back (it would wait for ever), nor try to flush a
    // client that has no connection: what is left is releasing the leadership lock, whose
    // check in flight takes up to a second.
    let started = std::time::Instant::now();
    poller.stop().await;
    assert_took_less_than(
        Duration::from_millis(2_500),
        started,
        "a stop while NATS is down",
    );
}

/// A publish whose ack never came may have been stored all the same: the poller must not
/// trust its record of what the stream holds for that tenant, or a state that goes back to
/// the recorded one is never sent and the stream keeps the one in between.
#[tokio::test]
async fn a_snapshot_whose_ack_never_came_is_not_taken_as_unsent() {
    let OnPrivateNats {
        nats,
        db,
        tenant,
        poller,
    } = on_private_nats("acklost", 1).await;
    let js = pulse_test_support::nats::checks(async_nats::connect(&nats.url).await.unwrap());
    let subject = format!("pulse.v1.{tenant}.alerts");
    let stored = || last_stored_at(&js, &subject);
    let errors = || async { poller.metric("pulse_poller_errors_total", &[]).await };
    eventually(
        "the first snapshot stored",
        Duration::from_secs(10),
        || async {
            stored()
                .await
                .is_some_and(|(_, v)| alert_ids(&v).is_empty())
        },
    )
    .await;
    let watcher = async_nats::connect(&nats.url).await.unwrap();
    let mut live = watcher.subscribe(subject.clone()).await.unwrap();
    // In place on the server before it hangs.
    watcher.flush().await.unwrap();

    // The fault takes hold only if the server still has the late publish when it goes on (a
    // client that gave up on its connection meanwhile drops what it had not written): staged
    // again until it does, and a failure if it never does.
    for attempt in 1..=3 {
        let errors_before = errors().await;
        // NATS hangs while an alert opens: the snapshot with it goes out, its ack never comes.
        nats.pause();
        let id = db
            .open_alert(&tenant, "dev-1", "opened while NATS hung")
            .await;
        eventually("the publish given up", Duration::from_secs(15), || async {
            errors().await > errors_before
        })
        .await;
        // The alert closes again: the state is the one recorded before. Then the server goes
        // on, and may store the snapshot with the alert after all.
        db.close_alert(id).await;
        nats.resume();
        eventually(
            "the stream's newest snapshot is the state without the alert",
            Duration::from_secs(15),
            || async {
                stored()
                    .await
                    .is_some_and(|(_, v)| !alert_ids(&v).contains(&id))
            },
        )
        .await;
        // What the server took after the hang, in order.
        let mut sent = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(
            Duration::from_millis(500),
            futures::StreamExt::next(&mut live),
        )
        .await
        {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            sent.push(alert_ids(&v).contains(&id));
        }
        let Some(late) = sent.iter().position(|&with| with) else {
            eprintln!("attempt {attempt}: the late publish never reached the server; again");
            continue;
        };
        // The fault took hold: the late snapshot with the alert was stored, then the state
        // without it was sent again although it is the one recorded before the hang, and the
        // stream ends on it.
        assert!(
            sent[late..].contains(&false),
            "with the alert, then without it: {sent:?}"
        );
        let (_, newest) = stored().await.unwrap();
        assert!(!alert_ids(&newest).contains(&id), "{newest}");
        poller.stop().await;
        return;
    }
    panic!("the late publish never reached the server in 3 attempts: nothing was staged");
}

/// A LISTEN connection a NAT or load balancer dropped without a word: the socket stays open
/// and nothing arrives on it. Staged by freezing its server process.
#[tokio::test]
async fn a_listen_connection_gone_silent_is_replaced_and_changes_flow_again() {
    let (db, tenant, [mut alerts]) = watched_tenant("silent", 1, ["alerts"]).await;
    let poller = spawn_active(config_with(&db, &["--listen-check-seconds", "1"])).await;
    let _frozen = Frozen::stop(listen_session(&db).await);
    let id = db
        .open_alert(&tenant, "dev-1", "while LISTEN was silent")
        .await;
    // Well before the safety-net poll (60 s here): 1 s quiet, 5 s for the check, a resync.
    alerts.lists_alert(id, Duration::from_secs(15)).await;
    poller.stop().await;
}

/// The server process of the poller's LISTEN connection: the session that ran LISTEN (or,
/// since, the quiet check).
async fn listen_session(db: &ScratchDb) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
               AND query IN ('LISTEN \"pulse_changes\"', 'SELECT 1 AS listen_check')",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no LISTEN session found"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A LISTEN connection ended by the server (a restart, an administrator): the change written
/// while it was gone goes out with the resync that follows the new LISTEN, and changes after
/// it are heard again, all well before the safety-net poll (60 s here).
#[tokio::test]
async fn a_listen_connection_ended_is_replaced_and_the_change_of_the_gap_goes_out() {
    let (db, tenant, [mut alerts]) = watched_tenant("listenend", 1, ["alerts"]).await;
    let poller = spawn_active(config_with(&db, &["--listen-check-seconds", "1"])).await;
    let pid = listen_session(&db).await;
    let gap: i64 = sqlx::query_scalar(
        "WITH ended AS (SELECT pg_terminate_backend($1)) \
         INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
         SELECT $2, 'dev-1', 'site-1', 'x', 1, 'in the gap' FROM ended RETURNING alert_id",
    )
    .bind(pid)
    .bind(&tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    alerts.lists_alert(gap, Duration::from_secs(10)).await;
    eventually(
        "a LISTEN connection of its own again",
        Duration::from_secs(10),
        || async { listen_session(&db).await != pid },
    )
    .await;
    let heard = db.open_alert(&tenant, "dev-1", "heard again").await;
    alerts.lists_alert(heard, Duration::from_secs(5)).await;
    poller.stop().await;
}

/// A LISTEN connection ended again and again right after it was made (a proxy or server that
/// ends every session): the poller connects again with backoff, not at once each time (each
/// reconnect has every tenant read and published again).
#[tokio::test]
async fn a_listen_connection_ended_as_soon_as_made_is_made_again_with_backoff() {
    let (db, _tenant, [_alerts]) = watched_tenant("listenloop", 1, ["alerts"]).await;
    // Checked after 30 s of quiet: every drop below comes sooner.
    let poller = spawn_active(config_with(&db, &["--listen-check-seconds", "30"])).await;
    listen_session(&db).await;
    let before = poller.errors("listen").await;
    // For 4 s, every LISTEN session is ended as soon as it is seen.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = current_database() \
                AND query IN ('LISTEN \"pulse_changes\"', 'SELECT 1 AS listen_check')",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = poller.errors("listen").await - before;
    // Backoff from 0.2 s doubling to 5 s: a handful in 4 s. At once each time: a hundred.
    assert!(
        (1.0..=15.0).contains(&lost),
        "{lost} LISTEN connections lost"
    );
    poller.stop().await;
}

/// A PostgreSQL server process stopped (SIGSTOP) until this is dropped, pass or fail.
struct Frozen(u32);

impl Frozen {
    fn stop(pid: i32) -> Self {
        let pid = u32::try_from(pid).expect("a process id");
        pulse_test_support::stop_process(pid);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        pulse_test_support::signal(self.0, "CONT");
    }
}

/// An acknowledgement cut off by a NATS restart is not waited for: the snapshot goes out again
/// as soon as NATS is back, not once the acknowledgement would have timed out (5 s).
#[tokio::test]
async fn a_publish_cut_off_by_a_nats_restart_goes_out_again_as_soon_as_nats_is_back() {
    let OnPrivateNats {
        mut nats,
        db,
        tenant,
        poller,
    } = on_private_nats("cutoff", 1).await;
    let subject = format!("pulse.v1.{tenant}.alerts");
    let js = pulse_test_support::nats::checks(async_nats::connect(&nats.url).await.unwrap());
    eventually(
        "the first snapshot stored",
        Duration::from_secs(20),
        || async { last_stored(&js, &subject).await.is_some() },
    )
    .await;
    let reads = || async {
        let m = poller.metrics().await;
        metric(&m, "pulse_poller_query_seconds_count", &["alerts"])
    };
    let reads_before = reads().await;

    // NATS hangs while an alert opens: the snapshot with it is sent, its ack awaited...
    nats.pause();
    let id = db.open_alert(&tenant, "dev-1", "sent as NATS died").await;
    eventually("the alerts read", Duration::from_secs(20), || async {
        reads().await > reads_before
    })
    .await;
    // ...when the server dies, and comes back.
    nats.stop().await;
    let back = std::time::Instant::now();
    nats.start_again().await;
    let js = pulse_test_support::nats::checks(async_nats::connect(&nats.url).await.unwrap());
    // Not held back by an acknowledgement that cannot come.
    let what = "NATS started again -> snapshot cut off by the restart stored";
    stored_within(&js, &subject, id, (back, Duration::from_secs(3)), what).await;
    poller.stop().await;
}

/// Waits (30 s at most) until the state stream's newest snapshot on `subject` lists alert `id`,
/// and checks that `what`, begun at `started`, took less than `limit`.
async fn stored_within(
    js: &async_nats::jetstream::Context,
    subject: &str,
    id: i64,
    (started, limit): (std::time::Instant, Duration),
    what: &str,
) {
    eventually(what, Duration::from_secs(30), || async {
        last_stored(js, subject)
            .await
            .is_some_and(|v| alert_ids(&v).contains(&id))
    })
    .await;
    assert_took_less_than(limit, started, what);
}

/// The newest message the state stream holds on `subject`, if it can be read.
async fn last_stored(
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> Option<serde_json::Value> {
    last_stored_at(js, subject).await.map(|(_, v)| v)
}

/// [`last_stored`], with its stream sequence.
async fn last_stored_at(
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> Option<(u64, serde_json::Value)> {
    let stream = js
        .get_stream(pulse_proto::subject::STATE_STREAM)
        .await
        .ok()?;
    let m = stream.direct_get_last_for_subject(subject).await.ok()?;
    Some((m.sequence, serde_json::from_slice(&m.payload).ok()?))
}
