//! Streams that vanish under an active poller: NATS restarted without its storage, or an
//! operator deleted one. The poller creates them again and fills them with the current state,
//! without waiting for anything in the database to change.

use std::time::Duration;

use async_nats::jetstream;
use pulse_proto::subject::{DEVICES_BUCKET, EVENTS_STREAM, STATE_STREAM};
use serde_json::json;

use crate::helpers::*;

/// The newest message of the state stream on `subject`, if the stream and message are there.
async fn last_stored(js: &jetstream::Context, subject: &str) -> Option<serde_json::Value> {
    let stream = js.get_stream(STATE_STREAM).await.ok()?;
    let m = stream.direct_get_last_for_subject(subject).await.ok()?;
    serde_json::from_slice(&m.payload).ok()
}

/// Whether the device bucket lists `device` of `tenant`.
async fn registered(js: &jetstream::Context, tenant: &str, device: &str) -> bool {
    let Ok(store) = js.get_key_value(DEVICES_BUCKET).await else {
        return false;
    };
    matches!(store.get(format!("{tenant}.{device}")).await, Ok(Some(_)))
}

/// Waits until the state stream holds `tenant`'s fleet snapshot and, when `alert` is given, an
/// alerts snapshot listing it, and the bucket lists both devices.
async fn refilled(js: &jetstream::Context, tenant: &str, alert: Option<i64>, what: &str) {
    eventually(what, Duration::from_secs(20), || async {
        let fleet = last_stored(js, &format!("pulse.v1.{tenant}.fleet")).await;
        let alerts = last_stored(js, &format!("pulse.v1.{tenant}.alerts")).await;
        fleet.is_some()
            && alerts.is_some_and(|a| alert.is_none_or(|id| alert_ids(&a).contains(&id)))
            && registered(js, tenant, "dev-1").await
            && registered(js, tenant, "dev-2").await
    })
    .await;
}

/// A poller on a NATS server of its own, once it has filled the streams for a tenant of two
/// devices; with a JetStream context on that server.
async fn filled(label: &str) -> (OnPrivateNats, jetstream::Context) {
    let on = on_private_nats(label, 2).await;
    let js = jetstream::new(async_nats::connect(&on.nats.url).await.unwrap());
    let what = "the first snapshots and registry entries";
    refilled(&js, &on.tenant, None, what).await;
    (on, js)
}

#[tokio::test]
async fn streams_deleted_under_an_active_poller_are_created_again_and_refilled() {
    let (on, js) = filled("deleted").await;
    let OnPrivateNats {
        db, tenant, poller, ..
    } = on;

    js.delete_stream(STATE_STREAM).await.unwrap();
    js.delete_stream(EVENTS_STREAM).await.unwrap();
    js.delete_key_value(DEVICES_BUCKET).await.unwrap();
    // No check here that they are gone: the poller may already have created them again (the
    // restore metric below says it did).

    // A change after the deletion: its publish finds no stream.
    let id = db.open_alert(&tenant, "dev-1", "after the deletion").await;
    sqlx::query("SELECT pulse_emit_event($1, 'orders', 'created', $2)")
        .bind(&tenant)
        .bind(json!({"n": 1}))
        .execute(&db.pool)
        .await
        .unwrap();
    // The streams come back with the change, and with what did not change: the fleet
    // snapshot and every device's registry entry.
    refilled(
        &js,
        &tenant,
        Some(id),
        "streams created again with the alert, the fleet and the registry",
    )
    .await;
    eventually(
        "the event emitted after the deletion relayed",
        Duration::from_secs(20),
        || async {
            js.get_stream(EVENTS_STREAM).await.is_ok()
                && !stored_events(&js, &format!("pulse.v1.{tenant}.events.orders"))
                    .await
                    .is_empty()
        },
    )
    .await;
    assert!(
        poller
            .metric("pulse_poller_streams_restored_total", &[])
            .await
            >= 1.0
    );
    poller.stop().await;
}

#[tokio::test]
async fn a_nats_restart_that_lost_its_storage_is_refilled_without_a_database_change() {
    let (on, _) = filled("wiped").await;
    let OnPrivateNats {
        mut nats,
        db: _db,
        tenant,
        poller,
    } = on;
    nats.start_again_empty().await;
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    refilled(
        &js,
        &tenant,
        None,
        "the emptied server holds the snapshots and registry again",
    )
    .await;
    assert!(js.get_stream(EVENTS_STREAM).await.is_ok());
    poller.stop().await;
}
