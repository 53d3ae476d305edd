//! Deleting a tenant removes what was published for it from NATS: its snapshots and readings
//! in `PULSE_STATE`, its events in `PULSE_EVENTS`, its keys in the device registry. Nothing of
//! it stays to be shown to a tenant created again with the same id.

use std::time::Duration;

use futures::TryStreamExt as _;
use pulse_proto::subject::{DEVICES_BUCKET, EVENTS_STREAM, STATE_STREAM};
use serde_json::json;

use crate::helpers::*;

/// Messages `stream` holds on subjects matching `filter` (from the stream's subject index);
/// none before a poller created it.
async fn held(stream: &str, filter: String) -> usize {
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let Ok(stream) = js.get_stream(stream).await else {
        return 0;
    };
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    subjects.into_iter().map(|(_, n)| n).sum()
}

/// What NATS holds of `tenant`: state, events, registry keys.
async fn held_of(tenant: &str) -> [usize; 3] {
    [
        held(STATE_STREAM, format!("pulse.v1.{tenant}.>")).await,
        held(EVENTS_STREAM, format!("pulse.v1.{tenant}.>")).await,
        held(
            &format!("KV_{DEVICES_BUCKET}"),
            format!("$KV.{DEVICES_BUCKET}.{tenant}.>"),
        )
        .await,
    ]
}

/// A tenant with two devices, an open alert, a reading and an event.
async fn tenant_with_data(db: &ScratchDb, label: &str) -> String {
    let tenant = db.tenant(label, 2).await;
    db.open_alert(&tenant, "dev-1", "disk full").await;
    db.reading(&tenant, "dev-2", json!({"temp_c": 21})).await;
    sqlx::query("SELECT pulse_emit_event($1, 'tickets', 'ticket:update', '{}')")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    tenant
}

async fn until_all_published(tenant: &str) {
    eventually(
        &format!("{tenant}'s alerts, fleet, reading, events and devices in NATS"),
        Duration::from_secs(20),
        || async {
            let [state, events, keys] = held_of(tenant).await;
            state >= 3 && events >= 2 && keys == 2
        },
    )
    .await;
}

/// Two tenants with data, on a database of their own, once a poller published all of it.
async fn two_published_tenants(label: &str) -> (ScratchDb, [String; 2], PollerHandle) {
    let (db, _) = db_with_tenant(&format!("{label}-none"), 0).await;
    let tenants = [
        tenant_with_data(&db, label).await,
        tenant_with_data(&db, &format!("{label}-b")).await,
    ];
    // The safety-net poll is a minute away (`config`).
    let poller = spawn_poller(config(&db)).await;
    for tenant in &tenants {
        until_all_published(tenant).await;
    }
    (db, tenants, poller)
}

/// Deletions queued and not purged yet.
async fn queued_purges(db: &ScratchDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tenant_purges")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_deleted_while_no_poller_ran_leaves_nats_and_the_others_stay() {
    let (db, [tenant, bystander], poller) = two_published_tenants("purge").await;
    poller.stop().await;

    // Deleted with no poller running: no poller saw it in its tenant list to see it go.
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    let poller = spawn_poller(config(&db)).await;
    eventually(
        "the deleted tenant's data purged",
        Duration::from_secs(20),
        || async { held_of(&tenant).await == [0, 0, 0] },
    )
    .await;
    // Marked done (just after the purge itself) and counted.
    eventually("the purge marked done", Duration::from_secs(5), || async {
        queued_purges(&db).await == 0
            && poller
                .metric("pulse_poller_tenants_purged_total", &[])
                .await
                >= 1.0
    })
    .await;
    // The other tenant keeps everything.
    let [state, events, keys] = held_of(&bystander).await;
    assert!(
        state >= 3 && events >= 2 && keys == 2,
        "{state} {events} {keys}"
    );
    poller.stop().await;
}

#[tokio::test]
async fn truncating_the_tenants_purges_them_all_at_once() {
    // The safety-net poll is a minute away: the truncation itself tells the poller.
    let (db, [first, second], poller) = two_published_tenants("purge-truncate").await;
    sqlx::query("TRUNCATE tenants CASCADE")
        .execute(&db.pool)
        .await
        .unwrap();
    eventually(
        "both tenants' data purged",
        Duration::from_secs(20),
        || async { held_of(&first).await == [0, 0, 0] && held_of(&second).await == [0, 0, 0] },
    )
    .await;
    eventually("the purges marked done", Duration::from_secs(5), || async {
        queued_purges(&db).await == 0
    })
    .await;
    poller.stop().await;
}

#[tokio::test]
async fn a_tenant_created_again_with_the_same_id_is_shown_none_of_the_old_ones_data() {
    let (db, _) = db_with_tenant("purge-again-none", 0).await;
    let tenant = tenant_with_data(&db, "purge-again").await;
    let poller = spawn_poller(config(&db)).await;
    until_all_published(&tenant).await;

    // Deleted and created again at once, with one device and no alert.
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    exec(
        &db,
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)",
        &tenant,
    )
    .await;
    exec(
        &db,
        "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-9', 's')",
        &tenant,
    )
    .await;
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let state = js.get_stream(STATE_STREAM).await.unwrap();
    let alerts = format!("pulse.v1.{tenant}.alerts");
    eventually(
        "only the new tenant's state in NATS",
        Duration::from_secs(20),
        || async {
            let Ok(last) = state.direct_get_last_for_subject(&alerts).await else {
                return false;
            };
            let snapshot: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
            // The old tenant's alert is gone; its reading, event and devices too.
            snapshot["total_open"] == 0
                && held(STATE_STREAM, format!("pulse.v1.{tenant}.device.>")).await == 0
                && held(EVENTS_STREAM, format!("pulse.v1.{tenant}.>")).await == 0
                && held(
                    &format!("KV_{DEVICES_BUCKET}"),
                    format!("$KV.{DEVICES_BUCKET}.{tenant}.>"),
                )
                .await
                    == 1
        },
    )
    .await;
    poller.stop().await;
}

/// A relay pass that read a tenant's events before its deletion sends them before the purge,
/// never after it: once the purge is done, none of them stays in `PULSE_EVENTS`.
#[tokio::test]
async fn events_a_relay_pass_read_before_the_deletion_do_not_outlive_the_purge() {
    let (db, [tenant, bystander], poller) = two_published_tenants("purge-relay").await;
    // A backlog of large events on five topics: one pass reads 1000 of them, 48 MiB, which
    // take the relay a while to send.
    let backlog = "SELECT pulse_emit_event($1, 'bulk-' || (g % 5), 'e', \
                     to_jsonb(repeat('x', 48 * 1024))) FROM generate_series(1, 1000) g";
    exec(&db, backlog, &tenant).await;
    // Deleted while the pass is under way: its first events are stored, the rest on the way.
    eventually("the pass under way", Duration::from_secs(20), || async {
        held(EVENTS_STREAM, format!("pulse.v1.{tenant}.events.>")).await > 1
    })
    .await;
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    eventually("the deletion purged", Duration::from_secs(30), || async {
        queued_purges(&db).await == 0
    })
    .await;
    // An event written after the purge goes out in a later pass than the deleted tenant's.
    let emit = "SELECT pulse_emit_event($1, 'after', 'e', '{}')";
    exec(&db, emit, &bystander).await;
    eventually("a later pass", Duration::from_secs(30), || async {
        held(EVENTS_STREAM, format!("pulse.v1.{bystander}.events.after")).await == 1
    })
    .await;
    assert_eq!(
        held_of(&tenant).await,
        [0, 0, 0],
        "nothing of {tenant} stays"
    );
    poller.stop().await;
}

/// A deposed poller's publish of a tenant, held by a partition until after the tenant was
/// deleted and purged, is stored late: the active poller sees it go by and purges the tenant
/// again, so that nothing of it is shown to one created again with the same id.
#[tokio::test]
async fn a_late_snapshot_of_a_deleted_tenant_is_purged_again() {
    let (db, [tenant, _], poller) = two_published_tenants("purge-late").await;
    let subject = format!("pulse.v1.{tenant}.alerts");
    let js = async_nats::jetstream::new(pulse_test_support::nats::shared().await);
    let (seq, _) = stored_alerts(&js, &subject).await;
    exec(&db, "DELETE FROM tenants WHERE tenant_id = $1", &tenant).await;
    eventually(
        "the deleted tenant purged",
        Duration::from_secs(20),
        || async { held_of(&tenant).await == [0, 0, 0] },
    )
    .await;

    // The late one, numbered before the last the active poller published.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", (seq - 1).to_string().as_str());
    let late = json!({"type": "alerts", "tenant_id": tenant, "seq": seq - 1, "alerts": []});
    js.publish_with_headers(subject, headers, late.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(
        "the late snapshot purged",
        Duration::from_secs(5),
        || async { held_of(&tenant).await == [0, 0, 0] },
    )
    .await;
    poller.stop().await;
}
