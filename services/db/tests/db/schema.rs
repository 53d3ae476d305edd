//! The schema's own guarantees: id rule, last-seen trigger, row-level security, and what each
//! service's role may do.

use pulse_db::roles;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use pulse_test_support::ScratchDb;

#[tokio::test]
async fn migrations_are_idempotent_and_refuse_hostile_ids() {
    let db = ScratchDb::migrated("db").await;
    pulse_db::migrate(&db.pool).await.unwrap();
    for bad in [">", "*", "a.b", "", "a b", &"x".repeat(65)] {
        let r = sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, 'x')")
            .bind(bad)
            .execute(&db.pool)
            .await;
        assert!(r.is_err(), "tenant id {bad:?} was accepted");
    }
}

#[tokio::test]
async fn last_seen_follows_the_newest_reading_whoever_writes() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("seen", 1).await;
    let seen = || async {
        sqlx::query_scalar::<_, Option<time::OffsetDateTime>>(
            "SELECT last_seen_at FROM devices WHERE tenant_id = $1 AND device_id = 'dev-1'",
        )
        .bind(&tenant)
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!(seen().await, None);
    let insert = async |ts: &str| {
        sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ($1, 'dev-1', $2::timestamptz, '{}')",
        )
        .bind(&tenant)
        .bind(ts)
        .execute(&db.pool)
        .await
        .unwrap();
    };
    insert("2026-01-01T10:00:00Z").await;
    insert("2026-01-01T12:00:00Z").await;
    // An older reading arriving late does not move it back.
    insert("2026-01-01T11:00:00Z").await;
    assert_eq!(
        seen().await,
        Some(time::macros::datetime!(2026-01-01 12:00:00 UTC))
    );
    // Deleting the newest falls back to the next newest.
    sqlx::query("DELETE FROM telemetry WHERE tenant_id = $1 AND ts = '2026-01-01T12:00:00Z'")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        seen().await,
        Some(time::macros::datetime!(2026-01-01 11:00:00 UTC))
    );
}

#[tokio::test]
async fn a_tenant_scoped_connection_sees_only_its_rows() {
    let db = ScratchDb::migrated("db").await;
    let a = tenant_with_an_alert(&db, "rls-a", 2, "a's").await;
    let b = tenant_with_an_alert(&db, "rls-b", 1, "b's").await;
    db.reading(&a, "dev-2", json!({})).await;

    let mut tx = begin_as_tenant_role(&db.pool).await;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(&b)
        .execute(&mut *tx)
        .await
        .unwrap();
    let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id::text FROM devices")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(tenants, vec![b.clone()]);
    let summaries: Vec<String> = sqlx::query_scalar("SELECT summary FROM alerts")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(summaries, vec!["b's".to_string()]);
    assert_eq!(count(&mut tx, "SELECT count(*) FROM telemetry").await, 0);
    tx.rollback().await.unwrap();

    // Without a tenant in scope, nothing at all.
    let mut tx = begin_as_tenant_role(&db.pool).await;
    assert_eq!(count(&mut tx, "SELECT count(*) FROM alerts").await, 0);
    tx.rollback().await.unwrap();
}

/// Every table that holds a tenant's rows has row-level security enabled and forced, so that
/// not even its owner reads across tenants by forgetting the tenant.
#[tokio::test]
async fn every_tenant_table_forces_row_level_security() {
    let db = ScratchDb::migrated("db").await;
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'public' AND c.relkind = 'r' \
            AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                          AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
                 OR c.relname = 'tenants') \
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let names: Vec<&str> = tables.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(
        names.contains(&"alerts") && names.contains(&"events") && names.contains(&"users"),
        "{names:?}"
    );
    for (name, enabled, forced) in &tables {
        assert!(
            *enabled && *forced,
            "{name}: rls {enabled}, forced {forced}"
        );
    }
}

/// What each service's role may do, through the same pool set-up the services use.
#[tokio::test]
async fn each_service_role_has_only_what_it_needs() {
    let db = ScratchDb::migrated("db").await;
    let tenant = tenant_with_an_alert(&db, "roles", 2, "hot").await;
    let other = tenant_with_an_alert(&db, "roles-b", 3, "hot").await;

    // The poller reads every tenant, and cannot change what it reads.
    let poller = pulse_db::lazy_pool(&db.url, 1, Some(roles::POLLER)).unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&poller)
        .await
        .unwrap();
    assert_eq!(who, "pulse_poller");
    let devices: i64 =
        sqlx::query_scalar("SELECT count(*) FROM devices WHERE tenant_id = ANY($1::text[])")
            .bind([&tenant, &other])
            .fetch_one(&poller)
            .await
            .unwrap();
    assert_eq!(devices, 5);
    for write in [
        "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-9', 's')",
        "UPDATE alerts SET status = 'CLOSED' WHERE tenant_id = $1",
        "DELETE FROM devices WHERE tenant_id = $1",
        "UPDATE users SET role = 'customer_admin' WHERE tenant_id = $1",
    ] {
        let e = sqlx::query(write)
            .bind(&tenant)
            .execute(&poller)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{write}: {e}");
    }

    // The web service, as itself, reads no tenant data at all ...
    let web = pulse_db::lazy_pool(&db.url, 1, Some(roles::WEB)).unwrap();
    for read in [
        "SELECT count(*) FROM devices",
        "SELECT count(*) FROM alerts",
        "SELECT count(*) FROM telemetry",
        "SELECT count(*) FROM events",
    ] {
        let e = sqlx::query_scalar::<_, i64>(read)
            .fetch_one(&web)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{read}: {e}");
    }
    // It changes no user, nor locks one (a logout everywhere counts through its function).
    for write in [
        "UPDATE users SET role = 'customer_admin' WHERE tenant_id = $1",
        "UPDATE users SET signouts = signouts + 1 WHERE tenant_id = $1",
        "SELECT user_id FROM users WHERE tenant_id = $1 FOR UPDATE",
    ] {
        let e = sqlx::query(write).bind(&tenant).execute(&web).await;
        let e = e.unwrap_err().to_string();
        assert!(e.contains("permission denied"), "{write}: {e}");
    }
    // ... and as a tenant that forgot to say which, it reads nothing.
    let mut tx = begin_as_tenant_role(&web).await;
    assert_eq!(
        count(&mut tx, "SELECT count(*) FROM devices").await,
        0,
        "no tenant set, no rows"
    );
    let written = sqlx::query(
        "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-9', 's')",
    )
    .bind(&tenant)
    .execute(&mut *tx)
    .await;
    assert!(
        written.is_err(),
        "a write without the tenant set was accepted"
    );
    drop(tx);
    // With the tenant set: its own rows only, and it cannot write for another tenant.
    let tenant_id = pulse_proto::TenantId::parse(tenant.as_str()).unwrap();
    let mut tx = roles::begin_as_tenant(&web, &tenant_id).await.unwrap();
    assert_eq!(count(&mut tx, "SELECT count(*) FROM devices").await, 2);
    let e = sqlx::query_scalar::<_, i64>("SELECT pulse_emit_event($1, 't', 'x')")
        .bind(&other)
        .fetch_one(&mut *tx)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    drop(tx);
    // The refused event took no seq of the other tenant's topic with it.
    let next: i64 = sqlx::query_scalar("SELECT pulse_emit_event($1, 't', 'x')")
        .bind(&other)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(next, 1);
}

/// The changes to users that gateways act on are queued only by the database's own functions:
/// no service's role, nor a tenant's, can queue or alter one (any role may send a
/// notification, so that is no proof of a change). The poller only reads and removes them.
#[tokio::test]
async fn user_changes_are_queued_only_by_the_databases_own_functions() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("queued", 1).await;
    let forge = [
        "INSERT INTO user_changes (tenant_id, user_id, change) VALUES ($1, 1, 'deleted')",
        "UPDATE user_changes SET change = 'deleted' WHERE tenant_id = $1",
    ];
    let denied = |what: &str, e: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
        let e = e.unwrap_err().to_string();
        assert!(e.contains("permission denied"), "{what}: {e}");
    };
    let poller = pulse_db::lazy_pool(&db.url, 1, Some(roles::POLLER)).unwrap();
    let web = pulse_db::lazy_pool(&db.url, 1, Some(roles::WEB)).unwrap();
    for sql in forge {
        denied(sql, sqlx::query(sql).bind(&tenant).execute(&poller).await);
        denied(sql, sqlx::query(sql).bind(&tenant).execute(&web).await);
        let tenant_id = pulse_proto::TenantId::parse(tenant.as_str()).unwrap();
        let mut tx = roles::begin_as_tenant(&web, &tenant_id).await.unwrap();
        denied(sql, sqlx::query(sql).bind(&tenant).execute(&mut *tx).await);
    }
    // A real change is queued, whoever makes it; the poller reads and removes it.
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, tenant_id, role) \
         VALUES ('q@queued.example', 'x', $1, 'customer_admin') RETURNING user_id",
    )
    .bind(&tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let deleted = format!("DELETE FROM users WHERE user_id = {user}");
    sqlx::raw_sql(&deleted).execute(&db.pool).await.unwrap();
    let taken: Vec<(i64, String)> =
        sqlx::query_as("DELETE FROM user_changes WHERE tenant_id = $1 RETURNING user_id, change")
            .bind(&tenant)
            .fetch_all(&poller)
            .await
            .unwrap();
    assert_eq!(taken, [(user, "deleted".to_owned())]);
}

/// A tenant of `devices` devices with an alert open on `dev-1` summarised `summary`, for the
/// tests of what one tenant's or service's connection sees of the rows of several tenants;
/// returns its id.
async fn tenant_with_an_alert(
    db: &ScratchDb,
    label: &str,
    devices: usize,
    summary: &str,
) -> String {
    let tenant = db.tenant(label, devices).await;
    db.open_alert(&tenant, "dev-1", summary).await;
    tenant
}

/// A transaction in the role every tenant's queries run as, before any tenant is set.
async fn begin_as_tenant_role(pool: &PgPool) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE pulse_tenant")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// The one number `sql` selects, read on `conn`.
async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// A tenant deleted and created again with the same id numbers its topics on from where the
/// deleted one stopped (deleted or truncated), so no event repeats a `(tenant, topic, seq)` (the relay's message id)
/// that JetStream or a client has seen; a topic never used still starts at 1.
#[tokio::test]
async fn a_tenant_created_again_numbers_its_topics_on() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("again", 0).await;
    let next_seq = async |topic: &str| emit(&db.pool, &tenant, topic).await.unwrap();
    for _ in 0..3 {
        next_seq("orders").await;
    }
    // Deleted (its topics' counters go with it) and created again with the same id.
    let recreate = || async {
        for sql in [
            "DELETE FROM tenants WHERE tenant_id = $1",
            "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)",
        ] {
            sqlx::query(sql)
                .bind(&tenant)
                .execute(&db.pool)
                .await
                .unwrap();
        }
    };
    recreate().await;
    assert_eq!(next_seq("orders").await, 4);
    assert_eq!(next_seq("orders").await, 5);
    assert_eq!(next_seq("fresh").await, 1);
    // And again: the floor follows.
    recreate().await;
    assert_eq!(next_seq("orders").await, 6);
    // A topic first used now has had no floor yet; every tenant truncated at once (no DELETE
    // trigger fires) keeps it too.
    for expected in 1..=2 {
        assert_eq!(next_seq("later").await, expected);
    }
    sqlx::raw_sql("TRUNCATE tenants CASCADE")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(next_seq("orders").await, 7);
    assert_eq!(next_seq("later").await, 3);
}

/// Every function of the schema that runs as its owner (SECURITY DEFINER) searches `pg_temp`
/// last, the ones a later migration adds included: one that does not finds a caller's
/// temporary table first (see `db::deployment`, which stages that).
#[tokio::test]
async fn every_function_run_as_the_owner_searches_pg_temp_last() {
    let db = ScratchDb::migrated("db").await;
    let unsafe_path: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p \
           JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE p.prosecdef AND n.nspname = current_schema() \
            AND NOT coalesce(p.proconfig, '{}') @> \
                ARRAY['search_path=pg_catalog, ' || quote_ident(n.nspname) || ', pg_temp']",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(unsafe_path, Vec::<String>::new());
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE p.prosecdef AND n.nspname = current_schema()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(owned >= 7, "{owned} functions run as the owner");
}

/// A tenant has at most 10,000 event topics: a new one past that is refused naming the cap,
/// while its topics, and the built-in `activity`, keep taking events.
#[tokio::test]
async fn a_tenant_has_at_most_ten_thousand_event_topics() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("topics", 0).await;
    sqlx::query(
        "INSERT INTO event_topics (tenant_id, topic, last_seq) \
         SELECT $1, 't' || g, 1 FROM generate_series(1, 10000) g",
    )
    .bind(&tenant)
    .execute(&db.pool)
    .await
    .unwrap();
    let e = emit(&db.pool, &tenant, "one-more").await.unwrap_err();
    let refused = e.as_database_error().and_then(|d| d.constraint());
    assert_eq!(refused, Some("event_topics_per_tenant"), "{e}");
    assert_eq!(emit(&db.pool, &tenant, "t1").await.unwrap(), 2);
    assert_eq!(emit(&db.pool, &tenant, "activity").await.unwrap(), 1);
    // Another tenant is not held back.
    let other = db.tenant("topics-other", 0).await;
    assert_eq!(emit(&db.pool, &other, "one-more").await.unwrap(), 1);
}

/// Writes an event `x` with an empty payload on `tenant`'s `topic`; its seq, or why it was
/// refused.
async fn emit(pool: &PgPool, tenant: &str, topic: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pulse_emit_event($1, $2, 'x', '{}')")
        .bind(tenant)
        .bind(topic)
        .fetch_one(pool)
        .await
}

/// A new password for all 100,000 users of a tenant in one statement (a forced reset) goes
/// through: logins racing a change wait on the user's row, and a change takes no lock of
/// PostgreSQL's lock table per user, which would run it out.
#[tokio::test]
async fn a_new_password_for_a_hundred_thousand_users_at_once_goes_through() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("reset", 0).await;
    sqlx::query(
        "INSERT INTO users (email, password_hash, tenant_id, role) \
         SELECT 'u' || g || '@' || $1 || '.example', 'old', $1, 'customer_viewer' \
           FROM generate_series(1, 100000) g",
    )
    .bind(&tenant)
    .execute(&db.pool)
    .await
    .unwrap();
    let changed = sqlx::query("UPDATE users SET password_hash = 'new' WHERE tenant_id = $1")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 100_000);
}
