//! The demo simulator's library against a real database.

use std::time::Duration;

use clap::Parser as _;
use pulse_simulator::SimulateArgs;

use crate::helpers::*;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimulateArgs,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn seeding_is_idempotent_and_the_simulator_writes_live_data() {
    let db = TestDb::new().await;
    let tenant = unique("demo");
    let args = Cli::try_parse_from([
        "simulate",
        "--tenants",
        &tenant,
        "--devices",
        "20",
        "--sites",
        "2",
        "--interval-ms",
        "100",
    ])
    .unwrap()
    .sim;

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
    db.drop_now().await;
}
