//! Who numbers events: the database, whoever writes the row. A tenant's connection (the web
//! service as `pulse_tenant`) writes its own tenant's events and nothing that decides their
//! order or their relay.

use pulse_db::roles;
use pulse_proto::TenantId;
use sqlx::PgPool;

use pulse_test_support::ScratchDb;

/// Runs `sql` (with `$1` the tenant) as `tenant`'s connection, in a transaction of its own that
/// commits; the `seq` it returns, if any, or why it was refused.
async fn as_tenant(pool: &PgPool, tenant: &str, sql: &str) -> Result<Option<i64>, sqlx::Error> {
    let id = TenantId::parse(tenant).unwrap();
    let mut tx = roles::begin_as_tenant(pool, &id).await?;
    let seq = sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(seq)
}

/// The constraint named by a check violation, or the whole error.
fn refusal(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) if d.code().as_deref() == Some("23514") => d.constraint().unwrap_or("").to_owned(),
        _ => e.to_string(),
    }
}

#[tokio::test]
async fn a_tenant_connection_cannot_renumber_or_pre_relay_its_events() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("numbered", 0).await;
    let emit = "SELECT pulse_emit_event($1, 'orders', 'x')";
    for expected in 1..=2 {
        assert_eq!(
            as_tenant(&db.pool, &tenant, emit).await.unwrap(),
            Some(expected)
        );
    }

    // The counters are the database's: setting one back would repeat seqs (message ids
    // JetStream drops as duplicates, positions clients hold), and a new one could start anywhere.
    for write in [
        "UPDATE event_topics SET last_seq = 1 WHERE tenant_id = $1",
        "INSERT INTO event_topics (tenant_id, topic, last_seq) VALUES ($1, 'fresh', 50)",
    ] {
        let e = as_tenant(&db.pool, &tenant, write).await.unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{write}: {e}");
    }
    // A row naming its own seq, or already relayed (so never relayed), is refused by name.
    for (write, constraint) in [
        (
            "INSERT INTO events (tenant_id, topic, seq, event) VALUES ($1, 'orders', 1, 'x')",
            "events_seq_drawn",
        ),
        (
            "INSERT INTO events (tenant_id, topic, seq, event) VALUES ($1, 'orders', 9, 'x')",
            "events_seq_drawn",
        ),
        (
            "INSERT INTO events (tenant_id, topic, event, relayed_at) VALUES ($1, 'orders', 'x', now())",
            "events_relayed_by_the_relay",
        ),
        // Nor a time of its own: one no reader's clock holds, or one backdated (pruned with
        // its idempotency key at once) or ahead.
        (
            "INSERT INTO events (tenant_id, topic, event, created_at) VALUES ($1, 'orders', 'x', 'infinity')",
            "events_created_at_by_the_database",
        ),
        (
            "INSERT INTO events (tenant_id, topic, event, created_at) \
             VALUES ($1, 'orders', 'x', now() - interval '2 days')",
            "events_created_at_by_the_database",
        ),
    ] {
        let e = as_tenant(&db.pool, &tenant, write).await.unwrap_err();
        assert_eq!(refusal(&e), constraint, "{write}");
    }
    // A row written directly is numbered like any other, after the refused ones left no gap.
    let direct =
        "INSERT INTO events (tenant_id, topic, event) VALUES ($1, 'orders', 'x') RETURNING seq";
    assert_eq!(as_tenant(&db.pool, &tenant, direct).await.unwrap(), Some(3));
    assert_eq!(as_tenant(&db.pool, &tenant, emit).await.unwrap(), Some(4));

    // What the relay reads: every seq once, in order, none marked relayed.
    let rows: Vec<(i64, bool)> = sqlx::query_as(
        "SELECT seq, relayed_at IS NOT NULL FROM events \
          WHERE tenant_id = $1 AND topic = 'orders' ORDER BY seq",
    )
    .bind(&tenant)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows, (1..=4).map(|s| (s, false)).collect::<Vec<_>>());
}

/// The owner (migrations, triggers) is held to the same numbering: a trigger or a script
/// writing rows directly cannot choose a seq either, nor move an event to a time no reader's
/// clock holds (which would stop the relay of every tenant's events).
#[tokio::test]
async fn even_the_owner_writes_events_without_choosing_their_seq() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("owner-numbered", 0).await;
    let e = sqlx::query(
        "INSERT INTO events (tenant_id, topic, seq, event) VALUES ($1, 'orders', 7, 'x')",
    )
    .bind(&tenant)
    .execute(&db.pool)
    .await
    .unwrap_err();
    assert_eq!(refusal(&e), "events_seq_drawn");
    sqlx::query("SELECT pulse_emit_event($1, 'dated', 'x')")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    for when in ["infinity", "10000-01-01", "0044-03-15 BC"] {
        let e = sqlx::query(&format!(
            "UPDATE events SET created_at = '{when}' WHERE tenant_id = $1"
        ))
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap_err();
        assert_eq!(refusal(&e), "events_created_at_in_range", "{when}");
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (tenant_id, topic, event) VALUES ($1, 'orders', 'x') RETURNING seq",
    )
    .bind(&tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(seq, 1, "the first of its topic");
}
