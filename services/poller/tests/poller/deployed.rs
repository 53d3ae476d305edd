//! The poller as deployed: logged in as a member of only `pulse_poller` (without inheriting),
//! on a database that an owner with no superuser or CREATEROLE migrated (deploy/README.md).
//! The other tests run it on a superuser's login, where only the role it sets binds it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_poller_with_only_its_role_publishes_snapshots_and_relays_events() {
    let deployed = pulse_test_support::Deployed::create("pollerdeployed").await;
    let db = &deployed.db;
    let tenant = db.tenant("deployed", 2).await;
    let mut alerts = subscribe(&format!("pulse.v1.{tenant}.alerts")).await;
    let mut fleet = subscribe(&format!("pulse.v1.{tenant}.fleet")).await;
    let mut events = subscribe(&format!("pulse.v1.{tenant}.events.>")).await;
    let poller = spawn_active(config_with(db, &["--database-url", &deployed.poller_url])).await;
    let counts = fleet.until(Duration::from_secs(10), |_| true).await;
    assert_eq!(counts["counts"]["total"], 2, "{counts}");

    // An alert opened by an outside writer: its snapshot, and its `activity` event relayed
    // (read, sent and marked relayed as pulse_poller).
    let id = db.open_alert(&tenant, "dev-1", "too hot").await;
    alerts.lists_alert(id, Duration::from_secs(10)).await;
    let is_event = |topic: &'static str| move |v: &Value| v["topic"] == topic;
    let activity = events
        .until(Duration::from_secs(10), is_event("activity"))
        .await;
    assert_eq!(activity["event"], "alert:opened", "{activity}");
    sqlx::query("SELECT pulse_emit_event($1, 'orders', 'order:placed')")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    let order = events
        .until(Duration::from_secs(10), is_event("orders"))
        .await;
    assert_eq!(order["seq"], 1, "{order}");
    wait_all_relayed(db, "both events marked relayed", Duration::from_secs(10)).await;
    poller.stop().await;
}

/// As deployed, the owner is bound by row-level security too: a truncation by the owner (or by
/// anyone: the statement triggers run as the owner) still tells of every user deleted and
/// queues every tenant's purge.
#[tokio::test]
async fn truncations_by_the_owner_tell_of_every_user_and_queue_every_purge() {
    let mut users = deployed_users("truncatedeployed", &["admin"]).await;
    let owner = sqlx::PgPool::connect(&users.deployed.owner_url)
        .await
        .unwrap();

    sqlx::raw_sql("TRUNCATE users CASCADE")
        .execute(&owner)
        .await
        .unwrap();
    let change = users.changes.next_body(Duration::from_secs(5)).await;
    assert_eq!(change["user_id"], users.ids[0].to_string(), "{change}");
    assert_eq!(change["change"], "deleted", "{change}");

    // Stopped first, so that the queued purge stays to be seen.
    users.poller.stop().await;
    sqlx::raw_sql("TRUNCATE tenants CASCADE")
        .execute(&owner)
        .await
        .unwrap();
    let queued: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM tenant_purges")
        .fetch_all(&owner)
        .await
        .unwrap();
    assert_eq!(queued, [users.tenant]);
    owner.close().await;
}
