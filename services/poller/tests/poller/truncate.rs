//! `TRUNCATE` fires no row trigger: a truncated table is told to the poller by a statement
//! trigger, at once, as deleting every row would be. The safety-net poll is 60 s away in these
//! tests, so only the notification can be in time.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn truncating_alerts_or_devices_publishes_the_emptied_snapshots_at_once() {
    let (db, tenant, [mut alerts, mut fleet]) =
        watched_tenant("truncate", 2, ["alerts", "fleet"]).await;
    let other = db.tenant("truncate-other", 1).await;
    let mut other_fleet = subscribe(&format!("pulse.v1.{other}.fleet")).await;
    let alert = db.open_alert(&tenant, "dev-1", "hot").await;
    let poller = spawn_poller(config(&db)).await;
    alerts
        .until(Duration::from_secs(10), |v| alert_ids(v) == [alert])
        .await;
    fleet
        .until(Duration::from_secs(10), |v| v["counts"]["total"] == 2)
        .await;
    other_fleet
        .until(Duration::from_secs(10), |v| v["counts"]["total"] == 1)
        .await;
    wait_listening(&poller, &db, &tenant).await;

    truncate(&db, "alerts").await;
    let emptied = alerts
        .until(Duration::from_secs(5), |v| v["total_open"] == 0)
        .await;
    assert_eq!(emptied["alerts"], json!([]));

    // Every tenant's fleet is read again, and each emptied one goes out.
    truncate(&db, "devices").await;
    for fleet in [&mut fleet, &mut other_fleet] {
        let emptied = fleet
            .until(Duration::from_secs(5), |v| v["counts"]["total"] == 0)
            .await;
        assert_eq!(emptied["devices"], json!([]));
    }
    poller.stop().await;
}

/// The gateways close a deleted user's connections at once: a truncated `users`, by name or
/// with its tenants, is told as a deletion of each user.
#[tokio::test]
async fn truncating_users_or_their_tenants_tells_the_gateways_of_each_user_deleted() {
    let (db, tenant) = db_with_tenant("truncate-users", 1).await;
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_poller(config(&db)).await;
    wait_listening(&poller, &db, &tenant).await;

    let ids = add_users(&db, &tenant, &["admin", "viewer"]).await;
    truncate(&db, "users").await;
    assert_eq!(deleted(&mut changes, &tenant, 2).await, ids_set(&ids));

    // A truncation rolled back tells nothing.
    let ids = add_users(&db, &tenant, &["again", "more"]).await;
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("TRUNCATE users CASCADE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    changes.assert_silent_for(Duration::from_millis(500)).await;

    truncate(&db, "tenants").await;
    assert_eq!(deleted(&mut changes, &tenant, 2).await, ids_set(&ids));
    changes.assert_silent_for(Duration::from_millis(300)).await;
    poller.stop().await;
}

/// The ids of the next `n` user changes on `changes`, each of which must be a deletion of a
/// user of `tenant`.
async fn deleted(changes: &mut Sub, tenant: &str, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let (_, change) = changes
            .next_within(Duration::from_secs(5))
            .await
            .expect("a user change within 5 s");
        assert_eq!(change["type"], "user_changed", "{change}");
        assert_eq!(change["tenant_id"], tenant, "{change}");
        assert_eq!(change["change"], "deleted", "{change}");
        ids.insert(
            change["user_id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default(),
        );
    }
    ids
}

fn ids_set(ids: &[i64]) -> BTreeSet<String> {
    ids.iter().map(i64::to_string).collect()
}

async fn truncate(db: &ScratchDb, tables: &str) {
    sqlx::raw_sql(&format!("TRUNCATE {tables} CASCADE"))
        .execute(&db.pool)
        .await
        .unwrap();
}
