//! The device registry (`PULSE_DEVICES`) lists exactly the devices each tenant has, so that
//! gateways can refuse the others.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};

use crate::helpers::*;

/// The devices the registry lists for `tenant` on the shared server.
async fn listed(tenant: &str) -> BTreeSet<String> {
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    listed_on(&js, tenant).await
}

/// The devices the registry `js` reaches lists for `tenant`: the bucket's subjects under the
/// tenant (from the stream's own subject index), less the deleted keys.
async fn listed_on(js: &async_nats::jetstream::Context, tenant: &str) -> BTreeSet<String> {
    let Ok(store) = js.get_key_value(pulse_proto::subject::DEVICES_BUCKET).await else {
        return BTreeSet::new();
    };
    let prefix = format!("{}{tenant}.", store.prefix);
    let stream = store.stream.clone();
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for (subject, _) in subjects {
        if let Some(device) = subject.strip_prefix(&prefix)
            && store
                .get(format!("{tenant}.{device}"))
                .await
                .unwrap()
                .is_some()
        {
            out.insert(device.to_owned());
        }
    }
    out
}

/// Whether `PULSE_STATE` holds a reading of `device`.
async fn holds_reading(tenant: &str, device: &str) -> bool {
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let stream = js
        .get_stream(pulse_proto::subject::STATE_STREAM)
        .await
        .unwrap();
    let subject = format!("pulse.v1.{tenant}.device.{device}.telemetry");
    stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .is_ok()
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

#[tokio::test]
async fn the_registry_follows_devices_added_and_removed_and_tenants_deleted() {
    let (db, tenant) = db_with_tenant("registry", 3).await;
    let bystander = db.tenant("registry-b", 1).await;
    let poller = spawn_poller(config(&db)).await;
    until_listed(&tenant, &["dev-1", "dev-2", "dev-3"]).await;
    until_listed(&bystander, &["dev-1"]).await;
    for device in ["dev-2", "dev-3"] {
        db.reading(&tenant, device, serde_json::json!({"n": 1}))
            .await;
        eventually("the reading stored", Duration::from_secs(10), || {
            holds_reading(&tenant, device)
        })
        .await;
    }

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
    // A removed device's last reading goes with it; the others' stay.
    assert!(!holds_reading(&tenant, "dev-2").await);
    assert!(holds_reading(&tenant, "dev-3").await);

    // A deleted tenant takes its devices with it; the other tenant keeps its own.
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    until_listed(&tenant, &[]).await;
    assert_eq!(listed(&bystander).await, set(&["dev-1"]));
    poller.stop().await;
}

#[tokio::test]
async fn a_device_deleted_while_no_poller_was_active_is_removed_by_the_next() {
    let (db, tenant) = db_with_tenant("registry-gap", 2).await;
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
}

#[tokio::test]
async fn a_registry_reads_only_the_tenants_it_syncs_and_leaves_the_others_alone() {
    use pulse_poller::registry::{self, DeviceRegistry};
    use pulse_proto::subject::device_key;
    use pulse_proto::{DeviceId, TenantId};

    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let mine = TenantId::parse(unique("reg-mine")).unwrap();
    let other = TenantId::parse(unique("reg-other")).unwrap();
    let key =
        |tenant: &TenantId, device: &str| device_key(tenant, &DeviceId::parse(device).unwrap());
    let store = registry::ensure(&js, 1).await.unwrap();
    // Another deployment's device, a stale one of ours, and one of ours deleted long ago.
    store
        .put(key(&other, "dev-1"), Default::default())
        .await
        .unwrap();
    store
        .put(key(&mine, "dev-old"), Default::default())
        .await
        .unwrap();
    store
        .put(key(&mine, "dev-gone"), Default::default())
        .await
        .unwrap();
    store.delete(key(&mine, "dev-gone")).await.unwrap();

    let mut registry = DeviceRegistry::open(&js, 1).await.unwrap();
    assert_eq!(
        registry.devices(&other),
        0,
        "opening reads no tenant's keys"
    );
    registry.sync(&mine, ["dev-1"]).await.unwrap();
    assert_eq!(registry.devices(&mine), 1);
    assert_eq!(
        registry.devices(&other),
        0,
        "a sync reads only its tenant's keys"
    );
    // The stale key was read before the first sync and removed by it; the other's stays.
    assert_eq!(listed(mine.as_str()).await, set(&["dev-1"]));
    assert_eq!(listed(other.as_str()).await, set(&["dev-1"]));
    assert_eq!(registry.tenant_reads(), 1);
    registry.sync(&other, std::iter::empty()).await.unwrap();
    assert_eq!(listed(other.as_str()).await, set(&[]));
    // A tenant without devices, like any other, is read from the bucket once.
    registry.sync(&other, std::iter::empty()).await.unwrap();
    registry.sync(&mine, ["dev-1"]).await.unwrap();
    assert_eq!(registry.tenant_reads(), 2);
}

#[tokio::test]
async fn many_tenants_are_read_in_one_pass_over_the_bucket() {
    use pulse_poller::registry::{self, DeviceRegistry, PER_TENANT_READS};
    use pulse_proto::subject::device_key;
    use pulse_proto::{DeviceId, TenantId};

    // A server of its own: the test reads the whole bucket, which other tests' tenant purges
    // change underneath on the shared server (a read that raced them stalled for 5 s).
    let nats = pulse_test_support::nats::PrivateNats::start().await;
    let js =
        async_nats::jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    let label = unique("reg-many");
    let mine: Vec<TenantId> = (0..=PER_TENANT_READS)
        .map(|n| TenantId::parse(format!("{label}-{n}")).unwrap())
        .collect();
    let other = TenantId::parse(unique("reg-many-other")).unwrap();
    let key =
        |tenant: &TenantId, device: &str| device_key(tenant, &DeviceId::parse(device).unwrap());
    let store = registry::ensure(&js, 1).await.unwrap();
    // Each of ours has a stale key, the first also one deleted long ago; another deployment
    // has a device of its own.
    for tenant in &mine {
        store
            .put(key(tenant, "dev-old"), Default::default())
            .await
            .unwrap();
    }
    store
        .put(key(&mine[0], "dev-gone"), Default::default())
        .await
        .unwrap();
    store.delete(key(&mine[0], "dev-gone")).await.unwrap();
    store
        .put(key(&other, "dev-1"), Default::default())
        .await
        .unwrap();

    // As many tenants as are read one by one: nothing is read ahead.
    let mut registry = DeviceRegistry::open(&js, 1).await.unwrap();
    registry.read_ahead(&mine[1..]).await.unwrap();
    assert_eq!(registry.bucket_reads(), 0);
    registry.sync(&mine[1], ["dev-1"]).await.unwrap();
    assert_eq!(registry.tenant_reads(), 1);

    // One more: the bucket is read once, and no sync reads anything after it.
    let mut registry = DeviceRegistry::open(&js, 1).await.unwrap();
    registry.read_ahead(&mine).await.unwrap();
    assert_eq!(registry.bucket_reads(), 1);
    assert_eq!(
        registry.devices(&mine[2]),
        1,
        "the stale key was read ahead"
    );
    assert_eq!(registry.devices(&mine[0]), 1, "a deleted key is not listed");
    assert_eq!(
        registry.devices(&other),
        0,
        "another deployment's keys are not kept"
    );
    for tenant in &mine {
        registry.sync(tenant, ["dev-1"]).await.unwrap();
    }
    assert_eq!(registry.tenant_reads(), 0);
    registry.read_ahead(&mine).await.unwrap();
    assert_eq!(
        registry.bucket_reads(),
        1,
        "tenants read already are not read again"
    );
    for tenant in &mine {
        let devices = listed_on(&js, tenant.as_str()).await;
        assert_eq!(devices, set(&["dev-1"]), "{tenant}");
    }
    assert_eq!(listed_on(&js, other.as_str()).await, set(&["dev-1"]));
}

/// Waits until `fleets` brought a message of `tenants` subjects, with at most 60 s between two.
async fn every_fleet(fleets: &mut async_nats::Subscriber, tenants: usize) {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < tenants {
        let next = tokio::time::timeout(Duration::from_secs(60), fleets.next());
        let message = next.await.expect("a fleet message within 60 s").unwrap();
        seen.insert(message.subject.to_string());
    }
}

/// A poller becoming active reads what the registry holds for every tenant before its first
/// fleet messages. It once read it a tenant at a time, and the server looks at every key of
/// the bucket to start each such read: with 3,000 tenants, minutes without a fleet message.
/// Staged on a nats-server of its own, so the bucket holds only these tenants' keys.
#[tokio::test]
async fn a_poller_taking_over_thousands_of_tenants_publishes_every_fleet_within_seconds() {
    const TENANTS: i64 = 3_000;
    let nats = PrivateNats::start().await;
    let db = ScratchDb::migrated("poller").await;
    let label = unique("many");
    sqlx::query("INSERT INTO tenants (tenant_id, name) SELECT $1 || '-' || g, 'many' FROM generate_series(1, $2) g")
        .bind(&label)
        .bind(TENANTS)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
         SELECT $1 || '-' || g, 'dev-' || d, 'site-1', 80 \
           FROM generate_series(1, $2) g, generate_series(1, 3) d",
    )
    .bind(&label)
    .bind(TENANTS)
    .execute(&db.pool)
    .await
    .unwrap();
    let client = pulse_test_support::nats::connect(&nats.url).await.unwrap();
    let mut fleets = subscribed(&client, "pulse.v1.*.fleet".into()).await;
    // The first poller writes every tenant's keys.
    let first = spawn_poller(config_on(&db, &nats)).await;
    every_fleet(&mut fleets, TENANTS as usize).await;
    first.stop().await;
    // A device deleted while no poller is active.
    let gone_from = format!("{label}-1500");
    exec(
        &db,
        "DELETE FROM devices WHERE tenant_id = $1 AND device_id = 'dev-2'",
        &gone_from,
    )
    .await;

    let started = Instant::now();
    let second = spawn_poller(config_on(&db, &nats)).await;
    every_fleet(&mut fleets, TENANTS as usize).await;
    // The keys came from the one read of the whole bucket, not from reads per tenant after it
    // failed.
    let registry_errors = second.metric("pulse_poller_errors_total", &["stage=\"registry\""]);
    assert_eq!(
        registry_errors.await,
        0.0,
        "the read of the whole bucket failed"
    );
    // Under a second alone. The bound leaves room for a loaded machine, and still tells
    // seconds from the minutes that reads per tenant took.
    assert_took_less_than(
        Duration::from_secs(15),
        started,
        "poller started over 3,000 tenants whose keys the registry holds -> every fleet published",
    );
    let js = async_nats::jetstream::new(client);
    let store = js
        .get_key_value(pulse_proto::subject::DEVICES_BUCKET)
        .await
        .unwrap();
    eventually(
        "the device deleted meanwhile unlisted",
        Duration::from_secs(5),
        || async {
            store
                .get(format!("{gone_from}.dev-2"))
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    assert!(
        store
            .get(format!("{gone_from}.dev-1"))
            .await
            .unwrap()
            .is_some()
    );
    second.stop().await;
}

/// The configuration of a nats-server with JetStream whose one user, `poller`, may or may not
/// write the device registry's keys.
fn registry_writable(store: &std::path::Path, writable: bool) -> String {
    let deny = if writable {
        ""
    } else {
        r#", deny: ["$KV.PULSE_DEVICES.>"]"#
    };
    format!(
        r#"jetstream {{ store_dir: {:?} }}
authorization {{
  users: [
    {{ user: poller, password: pw, permissions: {{ publish: {{ allow: [">"]{deny} }}, subscribe: {{ allow: [">"] }} }} }}
  ]
}}
"#,
        store.to_string_lossy()
    )
}

/// The safety net reads only the fleets that may have changed; a tenant whose registry
/// entries could not be written is one of them, so its devices get listed once the registry
/// takes writes again, with no change in the database.
#[tokio::test]
async fn registry_writes_refused_at_first_are_made_once_they_are_allowed() {
    let nats = PrivateNats::configured(|store| registry_writable(store, false), &[]).await;
    let url = nats.url_as("poller", "pw");
    let (db, tenant) = db_with_tenant("kv-refused", 2).await;
    let client = pulse_test_support::nats::connect(&url).await.unwrap();
    let mut fleet = subscribed(&client, format!("pulse.v1.{tenant}.fleet")).await;
    let args = ["--nats-url", &url, "--poll-seconds", "1"];
    let poller = spawn_poller(config_with(&db, &args)).await;
    // The fleet goes out even though its devices cannot be listed.
    tokio::time::timeout(Duration::from_secs(30), fleet.next())
        .await
        .expect("a fleet message while the registry refuses writes");
    let js = async_nats::jetstream::new(client);
    let store_kv = js
        .get_key_value(pulse_proto::subject::DEVICES_BUCKET)
        .await
        .unwrap();
    let key = format!("{tenant}.dev-1");
    // Safety-net passes read the fleet, and fail to list its devices, while writes are refused.
    eventually(
        "three safety-net passes",
        Duration::from_secs(60),
        || async {
            let m = poller.metrics().await;
            metric(
                &m,
                "pulse_poller_query_seconds_count",
                &["fleet_fingerprints"],
            ) >= 3.0
        },
    )
    .await;
    assert!(store_kv.get(&key).await.unwrap().is_none());

    nats.reconfigure(|store| registry_writable(store, true));
    eventually("both devices listed", Duration::from_secs(30), || async {
        store_kv.get(&key).await.unwrap().is_some()
            && store_kv
                .get(format!("{tenant}.dev-2"))
                .await
                .unwrap()
                .is_some()
    })
    .await;
    poller.stop().await;
}

/// A deleted key's marker stays while it is younger than the time kept (a watcher of the
/// bucket away for less still sees the deletion), and is purged at a read once older: the
/// markers of every device ever removed would otherwise stay for good.
#[tokio::test]
async fn deletion_markers_are_purged_once_older_than_kept() {
    use pulse_poller::registry::{self, DeviceRegistry};
    use pulse_proto::subject::{DEVICES_BUCKET, device_key};
    use pulse_proto::{DeviceId, TenantId};

    let nats = pulse_test_support::nats::PrivateNats::start().await;
    let js =
        async_nats::jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    let mine = TenantId::parse(unique("reg-markers")).unwrap();
    let key = |device: &str| device_key(&mine, &DeviceId::parse(device).unwrap());
    let store = registry::ensure(&js, 1).await.unwrap();
    for device in ["dev-a", "dev-b"] {
        store.put(key(device), Default::default()).await.unwrap();
        store.delete(key(device)).await.unwrap();
    }
    store.put(key("dev-c"), Default::default()).await.unwrap();
    let stream = js.get_stream(format!("KV_{DEVICES_BUCKET}")).await.unwrap();
    let held = |device: &str| {
        let subject = format!("$KV.{DEVICES_BUCKET}.{}", key(device));
        let stream = stream.clone();
        async move {
            stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .is_ok()
        }
    };

    // Younger than kept (the default half hour): the markers stay.
    let mut registry = DeviceRegistry::open(&js, 1).await.unwrap();
    registry.sync(&mine, ["dev-c"]).await.unwrap();
    assert_eq!(registry.markers_purged(), 0);
    assert!(held("dev-a").await && held("dev-b").await);

    // Older than kept (a second here): purged at the next read; the live key stays.
    let kept = Duration::from_secs(1);
    tokio::time::sleep(kept + Duration::from_millis(200)).await;
    let mut registry = DeviceRegistry::open(&js, 1)
        .await
        .unwrap()
        .keep_markers_for(kept);
    registry.sync(&mine, ["dev-c"]).await.unwrap();
    assert_eq!(registry.markers_purged(), 2);
    assert!(!held("dev-a").await && !held("dev-b").await);
    assert!(held("dev-c").await);
    assert_eq!(listed_on(&js, mine.as_str()).await, set(&["dev-c"]));
}
