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

/// A database that applied a migration in the wording it had before it was reworded (see
/// `REWORDED`) migrates on, onto the new wording; any other change of an applied migration is
/// still refused, as sqlx refuses it.
#[tokio::test]
async fn a_database_migrated_with_an_earlier_wording_migrates_on() {
    use pulse_db::migrate::{MIGRATOR, REWORDED};
    use sqlx::migrate::MigrateError;

    let db = ScratchDb::migrated("db").await;
    let set_checksum = async |version: i64, hex: &str| {
        sqlx::query("UPDATE _sqlx_migrations SET checksum = decode($2, 'hex') WHERE version = $1")
            .bind(version)
            .bind(hex)
            .execute(&db.pool)
            .await
            .unwrap();
    };
    let checksums = async || -> Vec<Vec<u8>> {
        sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    };
    let current: Vec<Vec<u8>> = MIGRATOR.iter().map(|m| m.checksum.to_vec()).collect();
    assert_eq!(checksums().await, current);

    assert!(!REWORDED.is_empty());
    for (version, earlier) in REWORDED {
        set_checksum(*version, earlier).await;
    }
    // As applied by an earlier release: sqlx alone refuses to go on. (On a connection of its
    // own, closed after: a refused run leaves sqlx's advisory lock held by its session.)
    let alone = pulse_db::lazy_pool(&db.url, 1, None).unwrap();
    let e = MIGRATOR.run(&alone).await.unwrap_err();
    assert!(matches!(e, MigrateError::VersionMismatch(_)), "{e}");
    alone.close().await;
    pulse_db::migrate(&db.pool).await.unwrap();
    assert_eq!(checksums().await, current);

    // A change that is no known rewording is refused.
    let (version, _) = REWORDED[0];
    set_checksum(version, &"00".repeat(48)).await;
    let e = pulse_db::migrate(&db.pool).await.unwrap_err();
    assert!(
        matches!(e, pulse_db::Error::Migrate(MigrateError::VersionMismatch(v)) if v == version),
        "{e}"
    );
}
