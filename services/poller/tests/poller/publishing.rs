//! What reaches NATS, and how fast.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use pulse_test_support::proxy::{Link, Proxy};
use pulse_test_support::through;
use serde_json::{Value, json};

use crate::helpers::*;

/// Starts a poller on `db` and waits for its first alerts and then fleet snapshots on the
/// tenant's `alerts` and `fleet` subscriptions; returns the poller and both. The fleet goes out
/// last in the first sync (after the device registry, whose start-up read grows with the shared
/// server's bucket): once it is in, the poller is in its loop.
async fn spawn_with_first_snapshots(
    db: &ScratchDb,
    alerts: &mut Sub,
    fleet: &mut Sub,
) -> (PollerHandle, Value, Value) {
    let poller = spawn_poller(config(db)).await;
    let first_alerts = alerts.until(Duration::from_secs(10), |_| true).await;
    let first_fleet = fleet.until(Duration::from_secs(10), |_| true).await;
    (poller, first_alerts, first_fleet)
}

#[tokio::test]
async fn every_tenant_has_snapshots_from_the_start_even_when_empty() {
    let (db, tenant, [mut alerts, mut fleet]) =
        watched_tenant("empty", 2, ["alerts", "fleet"]).await;
    let (poller, snapshot, f) = spawn_with_first_snapshots(&db, &mut alerts, &mut fleet).await;

    assert_eq!(snapshot["type"], "alerts");
    assert_eq!(snapshot["tenant_id"], tenant.as_str());
    assert_eq!(snapshot["alerts"], json!([]));
    assert_eq!(snapshot["total_open"], 0);
    assert_eq!(f["type"], "fleet");
    assert_eq!(
        f["counts"],
        json!({"total": 2, "online": 0, "stale": 0, "offline": 2})
    );
    assert_eq!(f["devices"][0]["status"], "OFFLINE");
    assert!(f["seq"].as_u64().unwrap() > 0);
    poller.stop().await;
}

#[tokio::test]
async fn an_inserted_alert_arrives_well_under_a_second_and_closing_removes_it() {
    let (db, tenant, [mut alerts, mut fleet]) =
        watched_tenant("fast", 1, ["alerts", "fleet"]).await;
    // From here on the poller is in its loop.
    let (poller, first, _) = spawn_with_first_snapshots(&db, &mut alerts, &mut fleet).await;
    let first_seq = first["seq"].as_u64().unwrap();

    // The safety-net poll is 60 s away: only NOTIFY can make this fast.
    let started = Instant::now();
    let id = db
        .open_alert(&tenant, "dev-1", "<img src=x onerror=alert(1)>")
        .await;
    let with = alerts.lists_alert(id, Duration::from_secs(5)).await;
    assert_took_less_than(Duration::from_millis(500), started, "SQL -> NATS");
    assert_eq!(with["alerts"][0]["summary"], "<img src=x onerror=alert(1)>");
    assert_eq!(with["alerts"][0]["status"], "OPEN");
    assert_eq!(with["alerts"][0]["severity"], 4);
    assert_eq!(with["total_open"], 1);
    let with_seq = with["seq"].as_u64().unwrap();
    assert!(with_seq > first_seq);

    db.close_alert(id).await;
    let without = alerts
        .until(Duration::from_secs(5), |v| !alert_ids(v).contains(&id))
        .await;
    assert_eq!(without["alerts"], json!([]));
    assert!(without["seq"].as_u64().unwrap() > with_seq);
    poller.stop().await;
}

#[tokio::test]
async fn a_capped_alerts_list_still_counts_every_open_alert_by_severity() {
    let (db, tenant) = db_with_tenant("severities", 1).await;
    // Oldest first: a critical alert, then three minor ones, of which a list of two shows the
    // newest.
    let critical = db.open_alert(&tenant, "dev-1", "old and critical").await;
    for n in 0..3 {
        let id = db.open_alert(&tenant, "dev-1", &format!("minor {n}")).await;
        set_severity(&db, id, 2).await;
    }
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;
    let poller = spawn_poller(config_with(&db, &["--alerts-cap", "2"])).await;
    let first = alerts
        .until(Duration::from_secs(10), |v| v["total_open"] == 4)
        .await;
    assert_eq!(alert_ids(&first).len(), 2);
    assert!(!alert_ids(&first).contains(&critical), "{first}");
    assert_eq!(first["open_by_severity"], json!({"2": 3, "4": 1}));

    // The unlisted alert changes severity: the list and the total stay, the counts change, and
    // that is a change to publish.
    set_severity(&db, critical, 5).await;
    let raised = alerts
        .until(Duration::from_secs(5), |v| {
            v["open_by_severity"] == json!({"2": 3, "5": 1})
        })
        .await;
    assert_eq!(raised["alerts"], first["alerts"]);
    assert_eq!(raised["total_open"], 4);

    db.close_alert(critical).await;
    let closed = alerts
        .until(Duration::from_secs(5), |v| v["total_open"] == 3)
        .await;
    assert_eq!(closed["open_by_severity"], json!({"2": 3}));
    poller.stop().await;
}

async fn set_severity(db: &ScratchDb, alert_id: i64, severity: i32) {
    sqlx::query("UPDATE alerts SET severity = $2 WHERE alert_id = $1")
        .bind(alert_id)
        .bind(severity)
        .execute(&db.pool)
        .await
        .expect("update the alert's severity");
}

#[tokio::test]
async fn an_unchanged_state_publishes_nothing() {
    let (db, tenant) = db_with_tenant("quiet", 1).await;
    db.open_alert(&tenant, "dev-1", "steady").await;
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;
    let poller = spawn_poller(config_with(&db, &["--poll-seconds", "1"])).await;
    alerts
        .until(Duration::from_secs(10), |v| alert_ids(v).len() == 1)
        .await;

    // Wait until the safety net has re-read the unchanged state several times…
    poller
        .wait_metric_grows(
            "three more unchanged safety-net reads",
            "pulse_poller_unchanged_total",
            &["alerts"],
            3.0,
        )
        .await;
    // …and nothing was published for it.
    alerts.assert_silent_for(Duration::from_millis(100)).await;
    poller.stop().await;
}

#[tokio::test]
async fn telemetry_reaches_the_device_subject() {
    let (db, tenant, [mut sub]) = watched_tenant("tele", 3, ["device.*.telemetry"]).await;
    // Let the poller become active before writing.
    let poller = spawn_active(config(&db)).await;

    db.reading(&tenant, "dev-2", json!({"temp_c": 21.5, "battery_pct": 90}))
        .await;
    let msg = sub
        .until(Duration::from_secs(5), |v| v["device_id"] == "dev-2")
        .await;
    assert_eq!(msg["type"], "telemetry");
    assert_eq!(msg["tenant_id"], tenant.as_str());
    assert_eq!(
        msg["data"]["metrics"],
        json!({"temp_c": 21.5, "battery_pct": 90})
    );
    assert!(msg["data"]["timestamp"].as_str().unwrap().ends_with('Z'));

    // A burst for one device publishes its newest reading, in order of seq.
    for i in 0..5 {
        db.reading(&tenant, "dev-3", json!({"n": i})).await;
    }
    let last = sub
        .until(Duration::from_secs(5), |v| {
            v["device_id"] == "dev-3" && v["data"]["metrics"]["n"] == 4
        })
        .await;
    assert!(last["seq"].as_u64().unwrap() > msg["seq"].as_u64().unwrap());
    poller.stop().await;
}

/// A reading's metrics go out as the database holds them: a number past a double or with more
/// digits than one keeps, every digit, and nesting deeper than 128. A reading a decoded map
/// cannot hold stops neither its own telemetry nor any other tenant's.
#[tokio::test]
async fn readings_only_postgresql_can_hold_go_out_as_stored_and_stop_nothing() {
    let (db, odd_tenant) = db_with_tenant("tele-odd", 1).await;
    let next_tenant = db.tenant("tele-next", 1).await;
    let nats = pulse_test_support::nats::shared().await;
    let mut odd = nats
        .subscribe(format!("pulse.v1.{odd_tenant}.device.*.telemetry"))
        .await
        .unwrap();
    let mut next = subscribe(&format!("pulse.v1.{next_tenant}.device.*.telemetry")).await;
    let poller = spawn_active(config(&db)).await;

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let metrics = format!(r#"{{"x": 1e400, "id": 123456789012345678901234, "deep": {deep}}}"#);
    let insert = format!(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         VALUES ($1, 'dev-1', now(), '{metrics}'::jsonb)"
    );
    exec(&db, &insert, &odd_tenant).await;
    db.reading(&next_tenant, "dev-1", json!({"n": 1})).await;
    let msg = next
        .until(Duration::from_secs(5), |v| v["device_id"] == "dev-1")
        .await;
    assert_eq!(msg["data"]["metrics"], json!({"n": 1}));
    let published =
        tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut odd))
            .await
            .expect("the odd reading is published")
            .unwrap();
    let text = String::from_utf8_lossy(&published.payload);
    for kept in [
        format!("1{}", "0".repeat(400)),
        "123456789012345678901234".to_owned(),
        deep,
    ] {
        assert!(text.contains(&kept), "{text}");
    }
    poller.stop().await;
}

#[tokio::test]
async fn a_reading_of_a_tenant_the_poller_was_not_told_about_is_published() {
    let db = ScratchDb::migrated("poller").await;
    // The new tenant's notifications are lost: the triggers that send them are off.
    for table in ["tenants", "devices"] {
        lose_notifications(&db, table).await;
    }
    let poller = spawn_active(config(&db)).await;
    // Its start-up reads of the tenants are over: on becoming active, at the safety-net poll's
    // first tick, and on the resync once LISTEN is connected. The next is a minute away.
    poller
        .wait_metric(
            "the start-up syncs done",
            "pulse_poller_query_seconds_count",
            &["tenants"],
            3.0,
        )
        .await;
    let tenant = db.tenant("untold", 1).await;
    let mut sub = subscribe(&format!("pulse.v1.{tenant}.device.*.telemetry")).await;
    db.reading(&tenant, "dev-1", json!({"n": 1})).await;
    // Well before the safety-net poll (60 s here) would load the tenant.
    let msg = sub
        .until(Duration::from_secs(5), |v| v["device_id"] == "dev-1")
        .await;
    assert_eq!(msg["data"]["metrics"], json!({"n": 1}));
    poller.stop().await;
}

#[tokio::test]
async fn a_pool_of_one_still_leaves_the_queries_a_connection_beside_listen() {
    let (db, tenant, [mut alerts]) = watched_tenant("pool1", 1, ["alerts"]).await;
    let poller = spawn_active(config_with(&db, &["--db-pool-size", "1"])).await;
    let id = db.open_alert(&tenant, "dev-1", "with one connection").await;
    alerts.lists_alert(id, Duration::from_secs(10)).await;
    poller.stop().await;
}

#[tokio::test]
async fn telemetry_keeps_flowing_while_changes_never_stop() {
    let (db, tenant, [mut sub]) = watched_tenant("busy", 2, ["device.*.telemetry"]).await;
    let poller = spawn_active(config(&db)).await;
    // A writer changing an alert without pause: a notification is always waiting.
    let id = db.open_alert(&tenant, "dev-1", "busy").await;
    let busy = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn({
        let (pool, busy) = (db.pool.clone(), busy.clone());
        async move {
            let mut n = 0u64;
            while !busy.is_cancelled() {
                n += 1;
                let _ = sqlx::query("UPDATE alerts SET summary = $2 WHERE alert_id = $1")
                    .bind(id)
                    .bind(format!("busy {n}"))
                    .execute(&pool)
                    .await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.reading(&tenant, "dev-2", json!({"n": 1})).await;
    let got = sub.next_within(Duration::from_secs(5)).await;
    busy.cancel();
    writer.await.unwrap();
    let (_, msg) = got.expect("a reading written among endless changes is still published");
    assert_eq!(msg["device_id"], "dev-2");
    poller.stop().await;
}

#[tokio::test]
async fn a_reading_that_commits_late_is_not_skipped() {
    let (db, tenant, [mut sub]) = watched_tenant("late", 2, ["device.*.telemetry"]).await;
    let poller = spawn_active(config(&db)).await;

    // T1 writes first (earlier transaction id, earlier timestamp) but commits last.
    let mut t1 = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         VALUES ($1, 'dev-1', now() - interval '1 second', '{\"who\": \"t1\"}')",
    )
    .bind(&tenant)
    .execute(&mut *t1)
    .await
    .unwrap();
    db.reading(&tenant, "dev-2", json!({"who": "t2"})).await;
    sub.until(Duration::from_secs(5), |v| v["device_id"] == "dev-2")
        .await;
    // Several telemetry polls pass while T1 is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    t1.commit().await.unwrap();

    let late = sub
        .until(Duration::from_secs(5), |v| v["device_id"] == "dev-1")
        .await;
    assert_eq!(late["data"]["metrics"]["who"], "t1");
    poller.stop().await;
}

/// A reading corrected at the same timestamp (its metrics updated, or written again) is the
/// device's newest and goes out; the same reading read again does not.
#[tokio::test]
async fn a_reading_corrected_at_the_same_timestamp_is_published() {
    let (db, tenant, [mut sub]) = watched_tenant("corrected", 1, ["device.*.telemetry"]).await;
    let poller = spawn_active(config(&db)).await;
    let metrics = |m: &Value| m["data"]["metrics"]["temp_c"].clone();
    // Each write sets the reading at one timestamp to `temp_c`, and its message must follow.
    let mut write_and_receive = async |sql: &str, temp_c: i64| {
        sqlx::query(sql)
            .bind(&tenant)
            .bind("2026-12-01T10:00:00Z")
            .bind(json!({ "temp_c": temp_c }))
            .execute(&db.pool)
            .await
            .unwrap();
        sub.until(Duration::from_secs(5), |v| metrics(v) == temp_c)
            .await
    };
    let insert = "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
                  VALUES ($1, 'dev-1', $2::timestamptz, $3)";
    let first = write_and_receive(insert, 20).await;
    let update = "UPDATE telemetry SET metrics = $3 WHERE tenant_id = $1 AND ts = $2::timestamptz";
    let updated = write_and_receive(update, 21).await;
    assert_eq!(updated["data"]["timestamp"], first["data"]["timestamp"]);
    write_and_receive(insert, 22).await;
    // Many telemetry polls (every 50 ms) later, nothing went out again.
    sub.assert_silent_for(Duration::from_millis(500)).await;
    poller.stop().await;
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_data() {
    let (db, a) = db_with_tenant("iso-a", 1).await;
    let b = db.tenant("iso-b", 1).await;
    let mut b_all = subscribe(&format!("pulse.v1.{b}.>")).await;
    let poller = spawn_active(config(&db)).await;

    let secret = unique("secret-of-a");
    let id = db.open_alert(&a, "dev-1", &secret).await;
    db.reading(&a, "dev-1", json!({"secret": secret})).await;
    let mut a_alerts = subscribe(&format!("pulse.v1.{a}.alerts")).await;
    // A sees its alert (read the retained snapshot path too, via the live subject).
    db.open_alert(&a, "dev-1", "second").await;
    a_alerts.lists_alert(id, Duration::from_secs(5)).await;

    // Meanwhile everything B's subjects carried mentions only B.
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some((subject, v)) = b_all
        .next_within(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        assert!(subject.starts_with(&format!("pulse.v1.{b}.")), "{subject}");
        assert_eq!(v["tenant_id"], b.as_str(), "{v}");
        assert!(!v.to_string().contains(&secret), "B received A's data: {v}");
    }
    poller.stop().await;
}

#[tokio::test]
async fn a_newcomer_reads_the_current_snapshot_from_jetstream() {
    let (db, tenant) = db_with_tenant("newcomer", 1).await;
    let id = db.open_alert(&tenant, "dev-1", "already open").await;
    db.reading(&tenant, "dev-1", json!({"v": 1})).await;
    let poller = spawn_poller(config(&db)).await;

    let client = pulse_test_support::nats::shared().await;
    let js = jetstream::new(client);
    let stream = js.get_stream("PULSE_STATE").await.unwrap();
    for (subject, check) in [
        (format!("pulse.v1.{tenant}.alerts"), "alerts"),
        (format!("pulse.v1.{tenant}.fleet"), "fleet"),
        (
            format!("pulse.v1.{tenant}.device.dev-1.telemetry"),
            "telemetry",
        ),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let m = loop {
            match stream.direct_get_last_for_subject(subject.clone()).await {
                Ok(m) => break m,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{subject} not retained: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], check);
        let header_seq: u64 = m
            .headers
            .get("Pulse-Seq")
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert_eq!(header_seq, v["seq"].as_u64().unwrap());
        if check == "alerts" {
            assert_eq!(alert_ids(&v), vec![id]);
        }
    }
    // One message per subject is kept.
    let info = js
        .get_stream("PULSE_STATE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.max_messages_per_subject, 1);
    assert!(info.config.allow_direct);
    poller.stop().await;
}

#[tokio::test]
async fn a_new_tenant_and_time_passing_are_published() {
    let db = ScratchDb::migrated("poller").await;
    // A tenant there from the start: its fleet goes out last in the first sync, so once it is
    // seen the poller is in its loop (a device is ONLINE for only a second here).
    let first = db.tenant("first", 1).await;
    let mut first_fleet = subscribe(&format!("pulse.v1.{first}.fleet")).await;
    let poller = spawn_poller(config_with(
        &db,
        &[
            "--poll-seconds",
            "1",
            "--stale-after-seconds",
            "1",
            "--offline-after-seconds",
            "3",
            "--fleet-devices-cap",
            "7",
        ],
    ))
    .await;
    poller.wait_active().await;
    first_fleet.until(Duration::from_secs(10), |_| true).await;
    // What it applies is recorded, for the web service's REST answers to agree.
    let mut conn = db.pool.acquire().await.unwrap();
    let applied = pulse_db::settings::read(&mut conn).await.unwrap();
    drop(conn);
    assert_eq!(applied.thresholds.stale_after, Duration::from_secs(1));
    assert_eq!(applied.thresholds.offline_after, Duration::from_secs(3));
    assert_eq!(applied.fleet_devices_cap, 7);

    let tenant = unique("later");
    let mut fleet = subscribe(&format!("pulse.v1.{tenant}.fleet")).await;
    for sql in [
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, 'Later')",
        "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-1', 's')",
    ] {
        exec(&db, sql, &tenant).await;
    }
    db.reading(&tenant, "dev-1", json!({})).await;
    let online = fleet
        .until(Duration::from_secs(5), |v| v["counts"]["online"] == 1)
        .await;
    assert_eq!(online["devices"][0]["status"], "ONLINE");
    // No write at all from here: only the clock moves.
    let stale = fleet
        .until(Duration::from_secs(5), |v| v["counts"]["stale"] == 1)
        .await;
    assert_eq!(stale["devices"][0]["status"], "STALE");
    let offline = fleet
        .until(Duration::from_secs(6), |v| v["counts"]["offline"] == 1)
        .await;
    assert_eq!(offline["devices"][0]["status"], "OFFLINE");
    assert!(offline["seq"].as_u64() > stale["seq"].as_u64());
    // Reporting again brings it back.
    db.reading(&tenant, "dev-1", json!({})).await;
    fleet
        .until(Duration::from_secs(2), |v| v["counts"]["online"] == 1)
        .await;
    poller.stop().await;
}

/// The safety-net poll reads the devices only of tenants whose fleet message may have changed,
/// and still finds what a lost notification did not tell and what only the clock changes.
#[tokio::test]
async fn the_safety_net_reads_only_the_fleets_that_may_have_changed() {
    let db = ScratchDb::migrated("poller").await;
    let reporting = db.tenant("net-reporting", 2).await;
    let quiet = db.tenant("net-quiet", 3).await;
    db.reading(&reporting, "dev-1", json!({})).await;
    let mut reporting_fleet = subscribe(&format!("pulse.v1.{reporting}.fleet")).await;
    let mut quiet_fleet = subscribe(&format!("pulse.v1.{quiet}.fleet")).await;
    let args = ["--poll-seconds", "1", "--fleet-refresh-seconds", "1"];
    let poller = spawn_active(config_with(&db, &args)).await;
    let first = reporting_fleet
        .until(Duration::from_secs(10), |_| true)
        .await;
    quiet_fleet.until(Duration::from_secs(10), |_| true).await;
    let sample = || async {
        let m = poller.metrics().await;
        // Each pass reads the tenant list first.
        let passes = metric(&m, "pulse_poller_query_seconds_count", &["tenants"]);
        (
            passes,
            metric(&m, "pulse_poller_fleet_devices_read_total", &[]),
        )
    };
    let after_passes = |n: f64| {
        let sample = &sample;
        async move {
            let (start, _) = sample().await;
            eventually(
                &format!("{n} more safety-net passes"),
                Duration::from_secs(15),
                || async { sample().await.0 >= start + n },
            )
            .await;
            sample().await.1
        }
    };

    // Once start-up is over (its resync, whenever LISTEN connects, reads every fleet again),
    // nothing changes and three passes in a row read no device.
    let settling = Instant::now();
    let mut read = after_passes(1.0).await;
    loop {
        let next = after_passes(3.0).await;
        if next == read {
            break;
        }
        assert!(
            settling.elapsed() < Duration::from_secs(30),
            "devices read while nothing changed: {read}, then {next}"
        );
        read = next;
    }

    // A change whose notification is lost is found, and only its tenant's devices are read.
    lose_notifications(&db, "devices").await;
    let sql = "UPDATE devices SET battery_pct = 42 WHERE tenant_id = $1 AND device_id = 'dev-2'";
    exec(&db, sql, &quiet).await;
    let changed = quiet_fleet
        .until(Duration::from_secs(5), |v| {
            v["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["battery_pct"] == 42.0))
        })
        .await;
    assert_eq!(changed["counts"]["total"], 3);
    assert_eq!(
        after_passes(2.0).await,
        read + 3.0,
        "devices read for one change"
    );

    // A device that reports again, and stays ONLINE, is not notified: its newer `last_seen_at`
    // goes out once the fleet refresh interval has passed.
    let dev_1 = |fleet: &serde_json::Value| {
        let devices = fleet["devices"].as_array().cloned().unwrap_or_default();
        devices.into_iter().find(|d| d["device_id"] == "dev-1")
    };
    let seen_first = dev_1(&first).unwrap()["last_seen_at"].clone();
    db.reading(&reporting, "dev-1", json!({})).await;
    let refreshed = reporting_fleet
        .until(Duration::from_secs(5), |v| {
            dev_1(v).is_some_and(|d| d["last_seen_at"] != seen_first)
        })
        .await;
    assert_eq!(dev_1(&refreshed).unwrap()["status"], "ONLINE");
    poller.stop().await;
}

/// A device that reports again after a gap changes its status; when that notification is lost,
/// the safety net finds it at its next poll, not only once the fleet refresh interval (30 s)
/// would let newer `last_seen_at` values go out.
#[tokio::test]
async fn a_device_back_online_is_published_by_the_next_safety_net_poll_when_untold() {
    let (db, tenant, [mut fleet]) = watched_tenant("net-back", 1, ["fleet"]).await;
    let poller = spawn_active(config_with(&db, &["--poll-seconds", "1"])).await;
    let first = fleet.until(Duration::from_secs(10), |_| true).await;
    assert_eq!(first["devices"][0]["status"], "OFFLINE");
    // The safety net has read the tenant, so it now watches rather than reads it.
    poller
        .wait_metric_grows(
            "two safety-net passes",
            "pulse_poller_query_seconds_count",
            &["fleet_fingerprints"],
            2.0,
        )
        .await;

    lose_notifications(&db, "devices").await;
    db.reading(&tenant, "dev-1", json!({})).await;
    let back = fleet
        .until(Duration::from_secs(5), |v| v["counts"]["online"] == 1)
        .await;
    assert_eq!(back["devices"][0]["status"], "ONLINE");
    poller.stop().await;
}

/// What the engine remembers of the readings it published shrinks with the devices deleted,
/// so it does not grow with devices that come and go.
#[tokio::test]
async fn the_readings_of_deleted_devices_are_forgotten() {
    let (db, tenant) = db_with_tenant("churn", 3).await;
    let js = jetstream::new(pulse_test_support::nats::shared().await);
    ensure_streams(&js).await;
    for device in ["dev-1", "dev-2", "dev-3"] {
        db.reading(&tenant, device, json!({"n": 1})).await;
    }
    let metrics = pulse_poller::metrics::Metrics::register(
        &mut prometheus_client::registry::Registry::default(),
    );
    let mut engine = pulse_poller::engine::Engine::new(
        config(&db),
        db.pool.clone(),
        js,
        metrics,
        std::sync::Arc::new(pulse_poller::seq::SeqClock::new()),
    );
    engine.full_sync().await.unwrap();
    engine.poll_telemetry().await.unwrap();
    assert_eq!(engine.telemetry_devices_recorded(), 3);

    let sql = "DELETE FROM devices WHERE tenant_id = $1 AND device_id IN ('dev-1', 'dev-3')";
    exec(&db, sql, &tenant).await;
    let id = pulse_proto::TenantId::parse(tenant.as_str()).unwrap();
    engine.refresh_fleet(&[id]).await.unwrap();
    assert_eq!(engine.telemetry_devices_recorded(), 1);
}

/// Turns off the trigger that tells the poller of changes to `table`: from here on its changes
/// are found only by the safety-net poll, as when a notification is lost.
async fn lose_notifications(db: &ScratchDb, table: &str) {
    sqlx::query(&format!(
        "ALTER TABLE {table} DISABLE TRIGGER {table}_notify"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
}

/// A tenant of one device watched on its alerts and telemetry, and a poller whose telemetry
/// cycles all take longer than their 10 ms interval: its database link, through a proxy, takes
/// at least 30 ms a query. Ready once a reading went out and several such cycles ran one after
/// the other.
struct BusyWithTelemetry {
    db: ScratchDb,
    tenant: String,
    alerts: Sub,
    readings: Sub,
    proxy: Proxy,
    poller: PollerHandle,
}

impl BusyWithTelemetry {
    async fn start(label: &str, lost: Option<&str>, extra: &[&str]) -> Self {
        let (db, tenant, [alerts, mut readings]) =
            watched_tenant(label, 1, ["alerts", "device.*.telemetry"]).await;
        if let Some(table) = lost {
            lose_notifications(&db, table).await;
        }
        let (db_url, upstream) = through(&db.url, 0);
        let proxy = Proxy::to(upstream).await;
        let (db_url, _) = through(&db_url, proxy.port);
        let mut args = vec!["--database-url", &db_url, "--telemetry-poll-ms", "10"];
        args.extend_from_slice(extra);
        let poller = spawn_active(config_with(&db, &args)).await;
        poller.wait_ready().await;
        proxy.set(Link::Slow(Duration::from_millis(15)));
        db.reading(&tenant, "dev-1", json!({"n": 1})).await;
        readings.until(Duration::from_secs(10), |_| true).await;
        poller
            .wait_metric_grows(
                "telemetry reads through the slow link",
                "pulse_poller_query_seconds_count",
                &["telemetry"],
                5.0,
            )
            .await;
        Self {
            db,
            tenant,
            alerts,
            readings,
            proxy,
            poller,
        }
    }

    /// Opens an alert and waits up to `within` for a snapshot that lists it.
    async fn alert_goes_out(&mut self, within: Duration) {
        let id = self
            .db
            .open_alert(&self.tenant, "dev-1", "while busy")
            .await;
        self.alerts
            .until(within, |v| alert_ids(v).contains(&id))
            .await;
    }

    async fn finish(self) {
        self.proxy.set(Link::Open);
        self.poller.stop().await;
    }
}

/// Telemetry cycles that take longer than `PULSE_TELEMETRY_POLL_MS` (a database far away, or
/// busy) must not hold back alert changes: each cycle ends with the next one already due, and
/// a change waits for ever unless the loop serves it between two cycles.
#[tokio::test]
async fn telemetry_cycles_longer_than_their_interval_do_not_hold_back_an_alert() {
    let mut busy = BusyWithTelemetry::start("busytele", None, &[]).await;
    // The safety-net poll is a minute away: only the change can bring it.
    busy.alert_goes_out(Duration::from_secs(10)).await;
    // And telemetry still flows.
    busy.db
        .reading(&busy.tenant, "dev-1", json!({"n": 2}))
        .await;
    busy.readings
        .until(Duration::from_secs(10), |v| v["data"]["metrics"]["n"] == 2)
        .await;
    busy.finish().await;
}

/// Nor the safety-net poll: a change whose notification was lost still goes out at the next
/// one, every `PULSE_POLL_SECONDS`, while telemetry cycles run one after the other.
#[tokio::test]
async fn telemetry_cycles_longer_than_their_interval_do_not_hold_back_the_safety_net() {
    let mut busy =
        BusyWithTelemetry::start("busynet", Some("alerts"), &["--poll-seconds", "1"]).await;
    busy.alert_goes_out(Duration::from_secs(15)).await;
    busy.finish().await;
}

/// A tenant of one device watched on its alerts, and a poller past the resync that follows
/// LISTEN's start: a change now refreshes its tenant alone.
async fn past_the_first_resync(label: &str) -> (ScratchDb, String, Sub, PollerHandle) {
    let (db, tenant, [mut alerts, mut fleet]) = watched_tenant(label, 1, ["alerts", "fleet"]).await;
    let (poller, _, _) = spawn_with_first_snapshots(&db, &mut alerts, &mut fleet).await;
    wait_listening(&poller, &db, &tenant).await;
    fleet.until(Duration::from_secs(10), |_| true).await;
    (db, tenant, alerts, poller)
}

/// Grants or revokes the poller's role's read of `alerts`.
async fn alerts_readable(db: &ScratchDb, readable: bool) {
    let sql = if readable {
        "GRANT SELECT ON alerts TO pulse_poller"
    } else {
        "REVOKE SELECT ON alerts FROM pulse_poller"
    };
    sqlx::query(sql).execute(&db.pool).await.unwrap();
}

/// While a resync keeps failing with the link up (the poller's role may not read the alerts),
/// it is tried again with backoff, not at every telemetry tick (50 ms here): each try reads
/// every tenant's alerts and publishes every snapshot again. Once the read is allowed, the
/// change it was for goes out within the backoff's cap.
#[tokio::test]
async fn a_resync_that_keeps_failing_is_tried_again_with_backoff_not_at_every_tick() {
    let (db, tenant, mut alerts, poller) = past_the_first_resync("resyncpace").await;
    alerts_readable(&db, false).await;
    let before = poller.errors("database").await;
    let id = db.open_alert(&tenant, "dev-1", "read refused").await;
    // A window of 4 s: about 8 tries with backoff from 0.2 s doubling to 5 s; 80 at every tick.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failed = poller.errors("database").await - before;
    assert!((1.0..=20.0).contains(&failed), "{failed} failed reads");
    alerts_readable(&db, true).await;
    alerts.lists_alert(id, Duration::from_secs(10)).await;
    poller.stop().await;
}

/// A refresh that fails (the database refused the read, NATS the publish) is tried again at
/// once, not left to the next safety-net poll: the change it was for goes out as soon as the
/// failure is over.
#[tokio::test]
async fn an_alert_whose_refresh_failed_goes_out_once_the_failure_is_over() {
    let (db, tenant, mut alerts, poller) = past_the_first_resync("refreshfail").await;
    // The poller's role may no longer read the alerts: the refresh of the change fails.
    alerts_readable(&db, false).await;
    let failed = poller
        .metric("pulse_poller_errors_total", &["database"])
        .await;
    let id = db.open_alert(&tenant, "dev-1", "read refused").await;
    poller
        .wait_metric(
            "the refresh failed",
            "pulse_poller_errors_total",
            &["database"],
            failed + 1.0,
        )
        .await;
    alerts_readable(&db, true).await;
    // The safety-net poll is a minute away.
    alerts.lists_alert(id, Duration::from_secs(10)).await;
    poller.stop().await;
}
