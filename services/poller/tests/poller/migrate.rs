//! `pulse-poller migrate` as the initContainers run it: it waits for PostgreSQL to answer, and
//! gives up at once on a database that answers with a refusal.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::helpers::*;

/// `pulse-poller migrate` against `url`, waiting up to `wait` for it.
fn migrate(url: &str, wait: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pulse-poller"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("PULSE_MIGRATE_WAIT", wait)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `url` with its server moved to 127.0.0.1:`port`; returns it and the server it named.
fn moved_to(url: &str, port: u16) -> (String, String) {
    let mut moved = reqwest::Url::parse(url).unwrap();
    let upstream = format!(
        "{}:{}",
        moved.host_str().unwrap(),
        moved.port().unwrap_or(5432)
    );
    moved.set_host(Some("127.0.0.1")).unwrap();
    moved.set_port(Some(port)).unwrap();
    (moved.to_string(), upstream)
}

/// Forwards every connection `listener` takes to `upstream`.
async fn forward(listener: tokio::net::TcpListener, upstream: String) {
    while let Ok((mut client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// What `child` wrote to stderr, once it exited (within `within`), and how it exited.
async fn outcome(child: Child, within: Duration) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`pulse-poller migrate` still runs after {within:?}"))
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_waits_for_postgresql_to_answer_then_applies_every_migration() {
    let db = ScratchDb::create("migratewait").await;
    let port = free_port();
    let (url, upstream) = moved_to(&db.url, port);
    // Nothing listens on the port yet: PostgreSQL is not there, for longer than one attempt
    // to connect takes (5 s).
    let mut child = migrate(&url, "60s");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "it gave up while PostgreSQL was away"
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(forward(listener, upstream));
    let (status, stderr) = outcome(child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {stderr}");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, pulse_db::migrate::MIGRATOR.iter().count());
}

#[tokio::test]
async fn migrate_gives_up_on_a_refusing_database_at_once_and_on_an_absent_one_after_its_wait() {
    let db = ScratchDb::create("migraterefused").await;
    // A database that does not exist: the server answers, and no wait changes its answer.
    let missing = db.url.replace(&db.name, &format!("{}_missing", db.name));
    let started = Instant::now();
    let (status, stderr) = outcome(migrate(&missing, "60s"), Duration::from_secs(20)).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "it waited");

    // No server at all, for longer than the wait.
    let (url, _) = moved_to(&db.url, free_port());
    let started = Instant::now();
    let (status, stderr) = outcome(migrate(&url, "1s"), Duration::from_secs(20)).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("waited up to 1s"), "{stderr}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "it did not wait");
    assert!(took < Duration::from_secs(4), "it waited {took:?}");
}

/// A release rolled back (or a pod of the previous release restarted mid-rollout) runs its
/// `migrate` step against a database a later release migrated further: it succeeds, leaving
/// the later migrations as they are, rather than keep the rollback's pods from starting.
#[tokio::test]
async fn migrate_leaves_a_database_a_later_release_migrated_further_as_it_is() {
    let db = ScratchDb::migrated("migrateahead").await;
    // What a later release's migration leaves in sqlx's table.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000001, 'a later release', true, decode(repeat('ab', 48), 'hex'), 1)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (status, stderr) = outcome(migrate(&db.url, "10s"), Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {stderr}");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        pulse_db::migrate::MIGRATOR.iter().count() + 1
    );
}
