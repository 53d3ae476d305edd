//! The device registry (`PULSE_DEVICES`) lists exactly the devices each tenant has, so that
//! gateways can refuse the others.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt as _;

use crate::helpers::*;

/// The devices the registry lists for `tenant`.
async fn listed(tenant: &str) -> BTreeSet<String> {
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let Ok(store) = js.get_key_value(pulse_proto::subject::DEVICES_BUCKET).await else {
        return BTreeSet::new();
    };
    let prefix = format!("{tenant}.");
    let keys: Vec<String> = store.keys().await.unwrap().try_collect().await.unwrap();
    let mut out = BTreeSet::new();
    for key in keys {
        if let Some(device) = key.strip_prefix(&prefix)
            && store.get(&key).await.unwrap().is_some()
        {
            out.insert(device.to_owned());
        }
    }
    out
}

fn set(devices: &[&str]) -> BTreeSet<String> {
    devices.iter().map(|d| d.to_string()).collect()
}

async fn until_listed(tenant: &str, want: &[&str]) {
    let want = set(want);
    eventually(
        &format!("registry of {tenant} = {want:?}"),
        Duration::from_secs(15),
        || async { listed(tenant).await == want },
    )
    .await;
}

async fn exec(db: &ScratchDb, sql: &str, tenant: &str) {
    sqlx::query(sql)
        .bind(tenant)
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_registry_follows_devices_added_and_removed_and_tenants_deleted() {
    let db = ScratchDb::migrated("poller").await;
    let tenant = db.tenant("registry", 3).await;
    let bystander = db.tenant("registry-b", 1).await;
    let poller = spawn_poller(config(&db)).await;
    until_listed(&tenant, &["dev-1", "dev-2", "dev-3"]).await;
    until_listed(&bystander, &["dev-1"]).await;

    exec(
        &db,
        "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-4', 's')",
        &tenant,
    )
    .await;
    exec(
        &db,
        "DELETE FROM devices WHERE tenant_id = $1 AND device_id = 'dev-2'",
        &tenant,
    )
    .await;
    until_listed(&tenant, &["dev-1", "dev-3", "dev-4"]).await;

    // A deleted tenant takes its devices with it; the other tenant keeps its own.
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    until_listed(&tenant, &[]).await;
    assert_eq!(listed(&bystander).await, set(&["dev-1"]));
    poller.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_device_deleted_while_no_poller_was_active_is_removed_by_the_next() {
    let db = ScratchDb::migrated("poller").await;
    let tenant = db.tenant("registry-gap", 2).await;
    let poller = spawn_poller(config(&db)).await;
    until_listed(&tenant, &["dev-1", "dev-2"]).await;
    poller.stop().await;

    exec(
        &db,
        "DELETE FROM devices WHERE tenant_id = $1 AND device_id = 'dev-1'",
        &tenant,
    )
    .await;
    // Nothing was active to see it go.
    assert_eq!(listed(&tenant).await, set(&["dev-1", "dev-2"]));

    let poller = spawn_poller(config(&db)).await;
    until_listed(&tenant, &["dev-2"]).await;
    poller.stop().await;
    db.drop_now().await;
}
