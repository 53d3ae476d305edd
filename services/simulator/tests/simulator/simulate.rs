//! The demo simulator's library against a real database.

use std::time::Duration;

use pulse_simulator::SimulateArgs;
use pulse_test_support::{ScratchDb, eventually, parse_config, unique};

async fn count(db: &ScratchDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn seeding_is_idempotent_and_the_simulator_writes_live_data() {
    let db = ScratchDb::migrated("simulator").await;
    let tenant = unique("demo");
    let args: SimulateArgs = parse_config(&[
        "simulate",
        "--tenants",
        &tenant,
        "--devices",
        "20",
        "--sites",
        "2",
        "--interval-ms",
        "100",
    ]);

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

    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(pulse_simulator::run(
        db.pool.clone(),
        args,
        stop.clone().cancelled_owned(),
    ));
    eventually("telemetry written", Duration::from_secs(20), || async {
        count(
            &db,
            "SELECT count(*) FROM devices WHERE last_seen_at IS NOT NULL",
        )
        .await
            >= 10
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
