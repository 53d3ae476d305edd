//! The schema's own guarantees: id rule, last-seen trigger, row-level security, idempotent
//! migrations.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn migrations_are_idempotent_and_refuse_hostile_ids() {
    let db = TestDb::new().await;
    pulse_poller::migrate(&db.pool).await.unwrap();
    for bad in [">", "*", "a.b", "", "a b", &"x".repeat(65)] {
        let r = sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, 'x')")
            .bind(bad)
            .execute(&db.pool)
            .await;
        assert!(r.is_err(), "tenant id {bad:?} was accepted");
    }
    db.drop_now().await;
}

#[tokio::test]
async fn last_seen_follows_the_newest_reading_whoever_writes() {
    let db = TestDb::new().await;
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
    let insert = |ts: &'static str| {
        sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ($1, 'dev-1', $2::timestamptz, '{}')",
        )
        .bind(tenant.clone())
        .bind(ts)
    };
    insert("2026-01-01T10:00:00Z")
        .execute(&db.pool)
        .await
        .unwrap();
    insert("2026-01-01T12:00:00Z")
        .execute(&db.pool)
        .await
        .unwrap();
    // An older reading arriving late does not move it back.
    insert("2026-01-01T11:00:00Z")
        .execute(&db.pool)
        .await
        .unwrap();
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
    db.drop_now().await;
}

#[tokio::test]
async fn a_tenant_scoped_connection_sees_only_its_rows() {
    let db = TestDb::new().await;
    let a = db.tenant("rls-a", 2).await;
    let b = db.tenant("rls-b", 1).await;
    db.open_alert(&a, "dev-1", "a's").await;
    db.open_alert(&b, "dev-1", "b's").await;
    db.reading(&a, "dev-2", json!({})).await;

    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE pulse_tenant")
        .execute(&mut *tx)
        .await
        .unwrap();
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
    let readings: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(readings, 0);
    tx.rollback().await.unwrap();

    // Without a tenant in scope, nothing at all.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE pulse_tenant")
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);
    tx.rollback().await.unwrap();
    db.drop_now().await;
}
