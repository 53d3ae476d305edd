//! The schema as deploy/README.md sets it up: a superuser creates the owner, the service roles
//! and one login per service beforehand; the owner, no superuser and without CREATEROLE,
//! applies the migrations; each service logs in as a member of its role only. The other tests
//! migrate as the server's superuser, whom row-level security does not bind.

use pulse_db::roles;
use pulse_proto::TenantId;
use sqlx::PgPool;

use pulse_test_support::Deployed;

/// A database as deployed, with a pool per login: the owner's (no role set, as migrations
/// run), the web service's and the poller's (each working as its role, as the services do).
struct Deployment {
    deployed: Deployed,
    owner: PgPool,
    web: PgPool,
    poller: PgPool,
}

fn pools(deployed: Deployed) -> Deployment {
    Deployment {
        owner: pulse_db::lazy_pool(&deployed.owner_url, 2, None).unwrap(),
        web: pulse_db::lazy_pool(&deployed.web_url, 2, Some(roles::WEB)).unwrap(),
        poller: pulse_db::lazy_pool(&deployed.poller_url, 2, Some(roles::POLLER)).unwrap(),
        deployed,
    }
}

/// Runs `sql` (`$1` the tenant, `$2` a topic) as the web service writes events: as
/// `pulse_tenant`, with the tenant set, in a transaction that commits; the seq it returns.
async fn as_web(
    d: &Deployment,
    tenant: &str,
    topic: &str,
    sql: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let id = TenantId::parse(tenant).unwrap();
    let mut tx = roles::begin_as_tenant(&d.web, &id).await?;
    let seq = sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(topic)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(seq)
}

/// `SELECT pulse_emit_event(tenant, topic, 'x')`, as the web service.
async fn emit_as_web(d: &Deployment, tenant: &str, topic: &str) -> Result<i64, sqlx::Error> {
    let seq = as_web(d, tenant, topic, "SELECT pulse_emit_event($1, $2, 'x')").await?;
    Ok(seq.expect("pulse_emit_event returns a seq"))
}

#[tokio::test]
async fn an_owner_without_superuser_or_createrole_migrates_and_the_services_work() {
    // Migrated as its owner, or this panics.
    let d = pools(Deployed::create("deployed").await);
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&d.owner)
        .await
        .unwrap();
    assert!(!superuser, "the owner must be an ordinary login");
    // Again, as every rollout's initContainers do.
    pulse_db::migrate(&d.owner).await.unwrap();

    let tenant = d.deployed.db.tenant("deployed", 1).await;
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 1);
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 2);

    // The topic cap binds here too: the trigger counting a tenant's topics runs as the owner,
    // and row-level security is forced on the owner.
    sqlx::query(
        "INSERT INTO event_topics (tenant_id, topic, last_seq) \
         SELECT $1, 't' || g, 1 FROM generate_series(1, 9999) g",
    )
    .bind(&tenant)
    .execute(&d.deployed.db.pool)
    .await
    .unwrap();
    let e = emit_as_web(&d, &tenant, "one-more").await.unwrap_err();
    let refused = e.as_database_error().and_then(|d| d.constraint());
    assert_eq!(refused, Some("event_topics_per_tenant"), "{e}");
    assert_eq!(emit_as_web(&d, &tenant, "t1").await.unwrap(), 2);

    // The poller reads the tenant's events and marks them relayed.
    let backlog: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM events WHERE tenant_id = $1 AND topic = 'orders' \
            AND relayed_at IS NULL ORDER BY seq",
    )
    .bind(&tenant)
    .fetch_all(&d.poller)
    .await
    .unwrap();
    assert_eq!(backlog, vec![1, 2]);
    let marked = sqlx::query(
        "UPDATE events SET relayed_at = now() \
          WHERE tenant_id = $1 AND topic = 'orders' AND relayed_at IS NULL",
    )
    .bind(&tenant)
    .execute(&d.poller)
    .await
    .unwrap();
    assert_eq!(marked.rows_affected(), 2);
}

/// Applies, as `owner`, the repository's migrations before `version`: a database as an earlier
/// release left it.
async fn migrate_before(owner: &PgPool, version: i64) {
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let earlier = std::env::temp_dir().join(pulse_test_support::unique("pulse-migrations"));
    std::fs::create_dir_all(&earlier).unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let applied_before = name
            .split('_')
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v < version);
        if applied_before {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap();
    let applied = migrator.run(owner).await;
    std::fs::remove_dir_all(&earlier).unwrap();
    applied.unwrap();
}

/// A keyed event written again directly with `ON CONFLICT DO NOTHING` (an outside writer's
/// retry) is dropped without drawing a seq: the topic's next event is the next number, not one
/// past a hole that every client would take for a lost event. Without `ON CONFLICT` the
/// retry is refused as before.
#[tokio::test]
async fn a_keyed_retry_dropped_on_conflict_leaves_no_hole_in_its_topic() {
    let d = pools(Deployed::create("keyedretry").await);
    let tenant = d.deployed.db.tenant("keyedretry", 0).await;
    let keyed = |conflict: &str| {
        format!(
            "INSERT INTO events (tenant_id, topic, event, idempotency_key) \
             VALUES ($1, $2, 'x', 'order-1') {conflict} RETURNING seq"
        )
    };
    let dropped = keyed(
        "ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    );
    assert_eq!(
        as_web(&d, &tenant, "orders", &dropped).await.unwrap(),
        Some(1)
    );
    for _ in 0..3 {
        assert_eq!(as_web(&d, &tenant, "orders", &dropped).await.unwrap(), None);
        let anywhere = keyed("ON CONFLICT DO NOTHING");
        assert_eq!(
            as_web(&d, &tenant, "orders", &anywhere).await.unwrap(),
            None
        );
    }
    let e = as_web(&d, &tenant, "orders", &keyed("")).await.unwrap_err();
    let code = e
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23505"), "{e}");
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 2);
}

/// `sql` (`$1` the tenant, `$2` `topic`) in `tx`; the seq it returns, if any.
async fn write_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: &str,
    topic: &str,
    sql: &str,
) -> Option<i64> {
    sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(topic)
        .fetch_optional(&mut **tx)
        .await
        .unwrap()
}

/// Waits until some login of the database waits for a lock (the server's superuser sees every
/// login's waits).
async fn someone_waits_for_a_lock(superuser: &PgPool) {
    pulse_test_support::eventually(
        "a writer waiting",
        std::time::Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock')",
            )
            .fetch_one(superuser)
            .await
            .unwrap()
        },
    )
    .await;
}

/// Two writers of one key at once on a topic: the second waits for the first, then is dropped
/// without drawing a seq. And a keyed writer waiting for its topic holds nothing meanwhile:
/// the writer it waits for may still write that key, where the two deadlocked.
#[tokio::test]
async fn concurrent_writers_of_one_key_leave_no_hole_either() {
    let d = pools(Deployed::create("keyedrace").await);
    let tenant = d.deployed.db.tenant("keyedrace", 0).await;
    let id = TenantId::parse(&tenant).unwrap();
    let keyed = |key: &str| {
        format!(
            "INSERT INTO events (tenant_id, topic, event, idempotency_key) \
             VALUES ($1, $2, 'x', '{key}') ON CONFLICT DO NOTHING RETURNING seq"
        )
    };
    let unkeyed = "INSERT INTO events (tenant_id, topic, event) VALUES ($1, $2, 'x') RETURNING seq";
    // The topic exists: its counter is where writers of it take turns.
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 1);
    // What the first writer writes and keeps open, what the second writes meanwhile, and what
    // the first writes next while the second waits.
    for ((first_sql, first_topic), (second_sql, second_topic), then) in [
        ((keyed("k1"), "orders"), (keyed("k1"), "orders"), None),
        (
            (unkeyed.to_owned(), "orders"),
            (keyed("k2"), "orders"),
            Some(keyed("k2")),
        ),
    ] {
        let mut first = roles::begin_as_tenant(&d.web, &id).await.unwrap();
        assert!(
            write_in(&mut first, &tenant, first_topic, &first_sql)
                .await
                .is_some()
        );
        let (second, ()) = tokio::join!(as_web(&d, &tenant, second_topic, &second_sql), async {
            someone_waits_for_a_lock(&d.deployed.db.pool).await;
            if let Some(sql) = &then {
                assert!(
                    write_in(&mut first, &tenant, first_topic, sql)
                        .await
                        .is_some()
                );
            }
            first.commit().await.unwrap();
        });
        assert_eq!(
            second.unwrap(),
            None,
            "{second_sql} on {second_topic}: dropped"
        );
    }
    // Four events on `orders`: the next one follows on.
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 5);
}

/// The functions that run as the owner (the triggers numbering events, keeping floors,
/// queueing purges) find the owner's tables, never a caller's temporary table of the same name:
/// a writer of events must not get the owner's rights through one.
#[tokio::test]
async fn a_callers_temporary_table_does_not_stand_in_for_the_owners() {
    let d = pools(Deployed::create("shadow").await);
    let tenant = d.deployed.db.tenant("shadow", 0).await;
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 1);

    // As the web service writes events: a temporary `event_topics`, primed, then an event.
    let id = TenantId::parse(&tenant).unwrap();
    let mut tx = roles::begin_as_tenant(&d.web, &id).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TEMP TABLE event_topics (tenant_id text, topic text, last_seq bigint, \
           PRIMARY KEY (tenant_id, topic)) ON COMMIT DROP; \
         INSERT INTO pg_temp.event_topics VALUES ('{tenant}', 'orders', 424241); \
         GRANT ALL ON pg_temp.event_topics TO PUBLIC"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT pulse_emit_event($1, 'orders', 'x')")
        .bind(&tenant)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let shadow: i64 = sqlx::query_scalar("SELECT last_seq FROM pg_temp.event_topics")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (seq, shadow),
        (2, 424241),
        "the owner's counter, untouched shadow"
    );
}

/// A database as deployed that holds readings no service can read back (written before the
/// timestamp checks of 20261204000003) migrates on as its owner: the readings are moved aside,
/// where the owner can inspect them, and the device's `last_seen_at` goes back to its newest
/// reading left.
#[tokio::test]
async fn an_owner_migrates_a_database_holding_readings_out_of_range() {
    const CHECKS: i64 = 20261204000003;
    let deployed = Deployed::unmigrated("deployedold").await;
    let owner = pulse_db::lazy_pool(&deployed.owner_url, 1, None).unwrap();
    migrate_before(&owner, CHECKS).await;
    let db = &deployed.db;
    let tenant = db.tenant("deployedold", 1).await;
    for ts in ["2026-12-01T00:00:00Z", "infinity"] {
        sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
             VALUES ($1, 'dev-1', $2::timestamptz, '{}')",
        )
        .bind(&tenant)
        .bind(ts)
        .execute(&db.pool)
        .await
        .unwrap();
    }

    pulse_db::migrate(&owner).await.unwrap();
    let aside: Vec<String> =
        sqlx::query_scalar("SELECT ts::text FROM telemetry_out_of_range WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_all(&owner)
            .await
            .unwrap();
    assert_eq!(aside, ["infinity"]);
    let last_seen: String = sqlx::query_scalar(
        "SELECT to_char(last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM devices \
          WHERE tenant_id = $1 AND device_id = 'dev-1'",
    )
    .bind(&tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(last_seen, "2026-12-01");
}
