//! Timestamps the services can read back: anything PostgreSQL accepts that they cannot decode
//! or publish as RFC 3339 is refused on write, and rows written before the rule are repaired by
//! the migration that brought it.

use std::borrow::Cow;

use sqlx::migrate::Migrator;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use pulse_test_support::ScratchDb;

/// PostgreSQL accepts each of these; none is a time the services can decode and publish.
const OUT_OF_RANGE: [&str; 5] = [
    "infinity",
    "-infinity",
    "10000-01-01T00:00:00Z",
    "0001-12-31T23:59:59Z BC",
    // Milliseconds passed as seconds, the likeliest way to write one by mistake.
    "57000-01-01T00:00:00Z",
];

/// The bounds, which must be accepted, read back and formatted.
const BOUNDS: [&str; 2] = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"];

async fn insert_reading(db: &ScratchDb, tenant: &str, ts: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         VALUES ($1, 'dev-1', $2::timestamptz, '{\"temp\": 20}')",
    )
    .bind(tenant)
    .bind(ts)
    .execute(&db.pool)
    .await
    .map(drop)
}

async fn insert_alert(db: &ScratchDb, tenant: &str, created: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary, \
                             created_at, closed_at) \
         VALUES ($1, 'dev-1', 'site-1', 'temp_high', 3, 'x', $2::timestamptz, $2::timestamptz)",
    )
    .bind(tenant)
    .bind(created)
    .execute(&db.pool)
    .await
    .map(drop)
}

/// What `sql` selects, one column, with `tenant` as `$1`.
async fn select<T>(db: &ScratchDb, sql: &str, tenant: &str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The `last_seen_at` of the tenant's one device.
async fn last_seen(db: &ScratchDb, tenant: &str) -> Option<OffsetDateTime> {
    let seen = select(
        db,
        "SELECT last_seen_at FROM devices WHERE tenant_id = $1",
        tenant,
    )
    .await;
    assert_eq!(seen.len(), 1);
    seen[0]
}

fn constraint_of(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    (db.code().as_deref() == Some("23514")).then(|| db.constraint().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_timestamp_the_services_cannot_read_is_refused_on_write_naming_the_column() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("ts_range", 1).await;
    for bad in OUT_OF_RANGE {
        let e = insert_reading(&db, &tenant, bad).await.unwrap_err();
        assert_eq!(
            constraint_of(&e).as_deref(),
            Some("telemetry_ts_in_range"),
            "reading at {bad}: {e}"
        );
        // Both its times are out of range; either constraint may be the one reported.
        let e = insert_alert(&db, &tenant, bad).await.unwrap_err();
        let constraint = constraint_of(&e);
        assert!(
            matches!(
                constraint.as_deref(),
                Some("alerts_created_at_in_range" | "alerts_closed_at_in_range")
            ),
            "alert at {bad}: {e}"
        );
    }
    // Nothing of the refused writes is left, and the device was never seen.
    let seen = last_seen(&db, &tenant).await;
    assert_eq!(seen, None);

    // The bounds are accepted, decoded and formatted as the services do.
    for good in BOUNDS {
        insert_reading(&db, &tenant, good).await.unwrap();
        insert_alert(&db, &tenant, good).await.unwrap();
    }
    let stored: Vec<OffsetDateTime> = select(
        &db,
        "SELECT ts FROM telemetry WHERE tenant_id = $1 ORDER BY ts",
        &tenant,
    )
    .await;
    let formatted: Vec<String> = stored
        .iter()
        .map(|ts| ts.format(&Rfc3339).unwrap())
        .collect();
    assert_eq!(formatted, BOUNDS);
    let seen = last_seen(&db, &tenant).await;
    assert_eq!(seen, stored.last().copied());
}

#[tokio::test]
async fn migrating_a_database_with_unreadable_timestamps_keeps_readings_aside_and_repairs_the_rest()
{
    let db = ScratchDb::create("db").await;
    // The schema as it was before the migration under test.
    let before: Vec<_> = pulse_db::migrate::MIGRATOR
        .iter()
        .take_while(|m| m.description != "timestamps in range")
        .cloned()
        .collect();
    assert!(
        before.len() < pulse_db::migrate::MIGRATOR.iter().count(),
        "the migration under test is named `timestamps_in_range`"
    );
    let older = Migrator {
        migrations: Cow::Owned(before),
        ..Migrator::DEFAULT
    };
    older.run(&db.pool).await.unwrap();
    let tenant = db.tenant("ts_repair", 1).await;
    insert_reading(&db, &tenant, "2026-01-01T10:00:00Z")
        .await
        .unwrap();
    for bad in OUT_OF_RANGE {
        insert_reading(&db, &tenant, bad).await.unwrap();
        insert_alert(&db, &tenant, bad).await.unwrap();
    }

    pulse_db::migrate(&db.pool).await.unwrap();

    let kept: Vec<String> = select(
        &db,
        "SELECT ts::text FROM telemetry WHERE tenant_id = $1 ORDER BY ts",
        &tenant,
    )
    .await;
    assert_eq!(kept, ["2026-01-01 10:00:00+00"]);
    let aside: Vec<i64> = select(
        &db,
        "SELECT count(*) FROM telemetry_out_of_range WHERE tenant_id = $1",
        &tenant,
    )
    .await;
    assert_eq!(aside, [OUT_OF_RANGE.len() as i64]);
    let seen = last_seen(&db, &tenant).await;
    assert_eq!(seen, Some(time::macros::datetime!(2026-01-01 10:00:00 UTC)));
    // Every alert is still there, at a time that decodes and formats.
    let alerts: Vec<(OffsetDateTime, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT created_at, closed_at FROM alerts WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(alerts.len(), OUT_OF_RANGE.len());
    for (created, closed) in alerts {
        created.format(&Rfc3339).unwrap();
        closed.unwrap().format(&Rfc3339).unwrap();
    }
    // And the rule holds from now on.
    let e = insert_reading(&db, &tenant, "infinity").await.unwrap_err();
    assert_eq!(constraint_of(&e).as_deref(), Some("telemetry_ts_in_range"));
}
