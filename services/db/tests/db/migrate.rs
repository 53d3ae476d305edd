//! Applying the migrations: from nothing, again, and from several processes at once (the
//! initContainers of every poller and web pod start together on a rollout).

use pulse_test_support::ScratchDb;

#[tokio::test]
async fn concurrent_runs_on_an_empty_database_all_succeed_and_apply_each_migration_once() {
    let db = ScratchDb::create("db").await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = pulse_db::lazy_pool(&db.url, 1, None).unwrap();
            tokio::spawn(async move { pulse_db::migrate(&pool).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let expected: Vec<i64> = pulse_db::migrate::MIGRATOR
        .iter()
        .map(|m| m.version)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(applied, expected);
    // And once more, on the migrated database: nothing to do, no error.
    pulse_db::migrate(&db.pool).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_hang() {
    // Port 1 refuses connections; the pool gives up after its acquire timeout.
    let pool = pulse_db::lazy_pool("postgres://postgres@127.0.0.1:1/none", 1, None).unwrap();
    let started = std::time::Instant::now();
    let e = pulse_db::migrate(&pool).await.unwrap_err();
    assert!(matches!(e, pulse_db::Error::Migrate(_)), "{e}");
    pulse_test_support::assert_took_less_than(
        std::time::Duration::from_secs(30),
        started,
        "migrating on an unreachable database given up",
    );
}
