//! The demo simulator's library against a real database.

use std::time::Duration;

use pulse_simulator::SimulateArgs;
use pulse_test_support::{ScratchDb, eventually, parse_config, unique};

async fn count(db: &ScratchDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// A migrated database, a demo tenant id of the test's own, and the simulator's arguments for
/// that tenant with `flags` after it.
async fn demo(flags: &[&str]) -> (ScratchDb, String, SimulateArgs) {
    let db = ScratchDb::migrated("simulator").await;
    let tenant = unique("demo");
    let mut argv = vec!["simulate", "--tenants", &tenant];
    argv.extend_from_slice(flags);
    let args = parse_config(&argv);
    (db, tenant, args)
}

/// Runs the simulator on `db` until the returned function is called and awaited.
fn start(db: &ScratchDb, args: SimulateArgs) -> impl AsyncFnOnce() {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(pulse_simulator::run(
        db.pool.clone(),
        args,
        stop.clone().cancelled_owned(),
    ));
    async move || {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the simulator stops within 10 s")
            .expect("the simulator task does not panic")
            .expect("the simulator returns no error");
    }
}

#[tokio::test]
async fn seeding_is_idempotent_and_the_simulator_writes_live_data() {
    let (db, _, args) = demo(&["--devices", "20", "--sites", "2", "--interval-ms", "100"]).await;

    let logins = pulse_simulator::seed(&db.pool, &args).await.unwrap();
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().any(|l| l.role == "customer_admin"));
    let snapshot = || async {
        (
            count(&db, "SELECT count(*) FROM tenants").await,
            count(&db, "SELECT count(*) FROM users").await,
            count(&db, "SELECT count(*) FROM devices").await,
        )
    };
    let first = snapshot().await;
    assert_eq!(first, (1, 2, 20));
    pulse_simulator::seed(&db.pool, &args).await.unwrap();
    assert_eq!(snapshot().await, first);

    let stop = start(&db, args);
    eventually("telemetry written", Duration::from_secs(20), || async {
        count(
            &db,
            "SELECT count(*) FROM devices WHERE last_seen_at IS NOT NULL",
        )
        .await
            >= 10
    })
    .await;
    stop().await;
}

/// A demo left running keeps an hour of readings (`--keep-readings`): older readings of its own
/// tenants go, in as many batches and chunks of devices as they take; another tenant's, and
/// newer ones, stay.
#[tokio::test]
async fn readings_older_than_the_window_are_deleted_for_the_demo_tenants_only() {
    let (db, tenant, args) =
        demo(&["--devices", "1500", "--sites", "1", "--keep-readings", "1h"]).await;
    pulse_simulator::seed(&db.pool, &args).await.unwrap();
    let other = db.tenant("other", 1).await;
    // More old readings than one delete takes (10,000), spread over more devices than one
    // chunk holds (1,000); a few of another tenant's as old; and the demo's readings of ten
    // minutes ago.
    let insert = |tenant: &str, count: i64, age: &str| {
        let sql = format!(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
             SELECT d.tenant_id, d.device_id, now() - interval '{age}' - make_interval(secs => g), '{{}}' \
               FROM devices d CROSS JOIN generate_series(1, $2::bigint) g WHERE d.tenant_id = $1"
        );
        let (pool, tenant) = (db.pool.clone(), tenant.to_string());
        async move {
            sqlx::query(&sql)
                .bind(tenant)
                .bind(count)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    insert(&tenant, 10, "2 hours").await;
    insert(&other, 7, "2 hours").await;
    insert(&tenant, 2, "10 minutes").await;
    let old = |tenant: &str| {
        let sql = format!(
            "SELECT count(*) FROM telemetry WHERE tenant_id = '{tenant}' AND ts < now() - interval '1 hour'"
        );
        let db = &db;
        async move { count(db, &sql).await }
    };
    assert_eq!(old(&tenant).await, 15_000);

    let stop = start(&db, args);
    eventually(
        "old demo readings deleted",
        Duration::from_secs(20),
        || async { old(&tenant).await == 0 },
    )
    .await;
    assert_eq!(old(&other).await, 7);
    let recent = format!(
        "SELECT count(*) FROM telemetry WHERE tenant_id = '{tenant}' \
           AND ts BETWEEN now() - interval '20 minutes' AND now() - interval '5 minutes'"
    );
    assert_eq!(count(&db, &recent).await, 3_000);
    stop().await;
}

/// A demo tenant deleted while the simulator runs (an operator trying the tenant purge) costs
/// its own readings and alerts only: the other tenants' go on.
#[tokio::test]
async fn a_demo_tenant_deleted_meanwhile_stops_only_its_own_data() {
    let (db, first, _) = demo(&[]).await;
    let second = unique("demo");
    let tenants = format!("{first},{second}");
    let argv = [
        "simulate",
        "--tenants",
        tenants.as_str(),
        "--devices",
        "10",
        "--sites",
        "2",
        "--interval-ms",
        "100",
    ];
    let args: SimulateArgs = parse_config(&argv);
    pulse_simulator::seed(&db.pool, &args).await.unwrap();
    let stop = start(&db, args);
    let readings = || {
        let sql = format!("SELECT count(*) FROM telemetry WHERE tenant_id = '{second}'");
        let db = &db;
        async move { count(db, &sql).await }
    };
    eventually(
        "readings of both tenants",
        Duration::from_secs(20),
        || async { readings().await > 0 },
    )
    .await;
    sqlx::query("DELETE FROM tenants WHERE tenant_id = $1")
        .bind(&first)
        .execute(&db.pool)
        .await
        .unwrap();
    let before = readings().await;
    eventually(
        "the other tenant's readings go on",
        Duration::from_secs(10),
        || async { readings().await >= before + 50 },
    )
    .await;
    stop().await;
}
