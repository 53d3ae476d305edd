//! Streams that vanish under an active poller: NATS restarted without its storage, or an
//! operator deleted one. The poller creates them again and fills them with the current state,
//! without waiting for anything in the database to change.

use std::time::Duration;

use async_nats::jetstream;
use pulse_proto::subject::{DEVICES_BUCKET, EVENTS_STREAM, STATE_STREAM};

use crate::helpers::*;
use pulse_poller::streams;
use pulse_test_support::db::ScratchDb;
use pulse_test_support::nats::{PrivateNats, checks};

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
    refilled_with(js, tenant, alert, &["dev-1", "dev-2"], what).await;
}

/// [`refilled`], for a tenant of `devices`: the fleet snapshot counts them all.
async fn refilled_with(
    js: &jetstream::Context,
    tenant: &str,
    alert: Option<i64>,
    devices: &[&str],
    what: &str,
) {
    eventually(what, Duration::from_secs(20), || async {
        let fleet = last_stored(js, &format!("pulse.v1.{tenant}.fleet")).await;
        let alerts = last_stored(js, &format!("pulse.v1.{tenant}.alerts")).await;
        let mut listed = true;
        for device in devices {
            listed = listed && registered(js, tenant, device).await;
        }
        fleet.is_some_and(|f| f["counts"]["total"] == devices.len())
            && alerts.is_some_and(|a| alert.is_none_or(|id| alert_ids(&a).contains(&id)))
            && listed
    })
    .await;
}

/// Waits until a write to `subject` fails because its stream cannot store (JetStream error
/// 10077), once `PrivateNats::remove_stored_messages` took the stream's files away. A write
/// that goes through keeps the server's file open a few more seconds (its write cache expires
/// 5 s after the last write), so the probe pauses longer than that between tries.
async fn unable_to_store(js: &jetstream::Context, subject: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let ack = match js.publish(subject.to_owned(), "{}".into()).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        if ack.is_err_and(|e| pulse_common::nats::store_failed(&e)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a write to {subject} still not refused for storage"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
}

/// The `Pulse-Seq` of each event the events stream holds for `subject`, in stream order.
async fn event_seqs(js: &jetstream::Context, subject: &str) -> Vec<u64> {
    stored_events(js, subject)
        .await
        .iter()
        .filter_map(|m| {
            m.headers
                .get(pulse_proto::headers::SEQ)?
                .as_str()
                .parse()
                .ok()
        })
        .collect()
}

/// Emits event `n` on `tenant`'s topic `orders`.
async fn emit(db: &ScratchDb, tenant: &str, n: i64) {
    let sql = format!("SELECT pulse_emit_event($1, 'orders', 'created', '{{\"n\": {n}}}')");
    exec(db, &sql, tenant).await;
}

/// Checks that `poller` created streams again, then stops it.
async fn restored_and_stopped(poller: PollerHandle) {
    let restored = poller
        .metric("pulse_poller_streams_restored_total", &[])
        .await;
    assert!(restored >= 1.0, "{restored}");
    poller.stop().await;
}

/// A poller on a NATS server of its own, once it has filled the streams for a tenant of two
/// devices; with a JetStream context on that server.
async fn filled(label: &str) -> (OnPrivateNats, jetstream::Context) {
    let on = on_private_nats(label, 2).await;
    let js = checks(async_nats::connect(&on.nats.url).await.unwrap());
    let what = "the first snapshots and registry entries";
    refilled(&js, &on.tenant, None, what).await;
    (on, js)
}

/// [`filled`], once event 1 of `orders` is relayed too.
async fn filled_with_an_event(label: &str) -> (OnPrivateNats, jetstream::Context) {
    let (on, js) = filled(label).await;
    emit(&on.db, &on.tenant, 1).await;
    wait_all_relayed(&on.db, "event 1 relayed", Duration::from_secs(10)).await;
    (on, js)
}

#[tokio::test]
async fn streams_deleted_under_an_active_poller_are_created_again_and_refilled() {
    let (on, js) = filled_with_an_event("deleted").await;
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
    emit(&db, &tenant, 2).await;
    // The streams come back with the change, and with what did not change: the fleet
    // snapshot and every device's registry entry.
    refilled(
        &js,
        &tenant,
        Some(id),
        "streams created again with the alert, the fleet and the registry",
    )
    .await;
    // The events stream holds the events the outbox holds: the one relayed into the deleted
    // stream, and the one emitted after.
    let subject = format!("pulse.v1.{tenant}.events.orders");
    eventually(
        "both events in the events stream created again",
        Duration::from_secs(20),
        || async {
            js.get_stream(EVENTS_STREAM).await.is_ok() && event_seqs(&js, &subject).await == [1, 2]
        },
    )
    .await;
    restored_and_stopped(poller).await;
}

#[tokio::test]
async fn a_nats_restart_that_lost_its_storage_is_refilled_without_a_database_change() {
    let (mut on, _) = filled_with_an_event("wiped").await;
    on.nats.start_again_empty().await;
    let js = checks(async_nats::connect(&on.nats.url).await.unwrap());
    let what = "the emptied server holds the snapshots and registry again";
    refilled(&js, &on.tenant, None, what).await;
    refilled_events(&js, &on.tenant, &[1]).await;
    on.poller.stop().await;
}

#[tokio::test]
async fn a_poller_taking_over_on_a_server_that_lost_its_storage_refills_the_events() {
    let (mut on, _) = filled_with_an_event("wiped-idle").await;
    on.poller.stop().await;
    // No poller active while the server loses its storage.
    on.nats.start_again_empty().await;
    let poller = spawn_poller(config_on(&on.db, &on.nats)).await;
    let js = checks(async_nats::connect(&on.nats.url).await.unwrap());
    refilled_events(&js, &on.tenant, &[1]).await;
    poller.stop().await;
}

/// Waits until the events stream holds `tenant`'s events `seqs` of topic `orders`.
async fn refilled_events(js: &jetstream::Context, tenant: &str, seqs: &[u64]) {
    let subject = format!("pulse.v1.{tenant}.events.orders");
    eventually(
        "the events stream refilled from the outbox",
        Duration::from_secs(20),
        || async {
            js.get_stream(EVENTS_STREAM).await.is_ok() && event_seqs(js, &subject).await == seqs
        },
    )
    .await;
}

#[tokio::test]
async fn streams_deleted_by_hand_come_back_at_once_with_nothing_written() {
    // Nothing is written after the deletion, and the safety-net poll is a minute away
    // (`--poll-seconds 60`): what brings them back is the server's announcement.
    let (on, js) = filled("deleted-quiet").await;
    // Once the first safety-net pass is done (the tenant list read a second time, after the
    // first sync), the next is a minute away.
    let what = "the first safety-net pass";
    let reads = "pulse_poller_query_seconds_count";
    on.poller.wait_metric(what, reads, &["tenants"], 2.0).await;
    js.delete_stream(EVENTS_STREAM).await.unwrap();
    js.delete_key_value(DEVICES_BUCKET).await.unwrap();
    eventually(
        "the events stream and the bucket created again, the bucket refilled",
        Duration::from_secs(10),
        || async {
            js.get_stream(EVENTS_STREAM).await.is_ok()
                && registered(&js, &on.tenant, "dev-1").await
                && registered(&js, &on.tenant, "dev-2").await
        },
    )
    .await;
    restored_and_stopped(on.poller).await;
}

#[tokio::test]
async fn a_state_stream_and_bucket_that_cannot_store_are_created_again_and_refilled() {
    let (on, js) = filled("unstorable").await;
    let tenant = &on.tenant;
    let bucket = format!("KV_{DEVICES_BUCKET}");
    on.nats.remove_stored_messages(STATE_STREAM);
    on.nats.remove_stored_messages(&bucket);
    // Probes of the test's own (a device and a key no poller writes): once they are refused,
    // every write is.
    let probe = format!("pulse.v1.{tenant}.device.probe.telemetry");
    unable_to_store(&js, &probe).await;
    let probe = format!("$KV.{DEVICES_BUCKET}.{tenant}.probe");
    unable_to_store(&js, &probe).await;
    let restored = on.poller.metric("pulse_poller_streams_restored_total", &[]);
    assert_eq!(restored.await, 0.0);

    // The new device's fleet snapshot and registry entry are refused, and both stores are
    // created again; everything goes out again, the new device included.
    let sql = "INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-3', 's')";
    exec(&on.db, sql, tenant).await;
    refilled_with(
        &js,
        tenant,
        None,
        &["dev-1", "dev-2", "dev-3"],
        "the state stream and bucket created again and refilled",
    )
    .await;
    restored_and_stopped(on.poller).await;
}

#[tokio::test]
async fn an_events_stream_that_cannot_store_is_created_again_and_refilled_from_the_outbox() {
    let (on, js) = filled_with_an_event("unstorable-events").await;
    let tenant = &on.tenant;
    let created = js
        .get_stream(EVENTS_STREAM)
        .await
        .unwrap()
        .cached_info()
        .created;

    on.nats.remove_stored_messages(EVENTS_STREAM);
    unable_to_store(&js, &format!("pulse.v1.{tenant}.events.probe")).await;
    // The relay's send is refused: the stream is created again, and the outbox's events
    // relayed into it again, the one it held included.
    emit(&on.db, tenant, 2).await;
    let subject = format!("pulse.v1.{tenant}.events.orders");
    eventually(
        "a new events stream holding both events",
        Duration::from_secs(20),
        || async {
            js.get_stream(EVENTS_STREAM)
                .await
                .is_ok_and(|s| s.cached_info().created > created)
                && event_seqs(&js, &subject).await == [1, 2]
        },
    )
    .await;
    let refused = on
        .poller
        .metric("pulse_poller_store_failures_total", &["PULSE_EVENTS"])
        .await;
    assert!(refused >= 1.0, "{refused}");
    restored_and_stopped(on.poller).await;
}

/// Streams that cannot store are deleted, whatever they hold, to be created again and
/// refilled; each at most once a minute. On a real server (whether their storage failed is
/// the writers' report, not looked at here).
#[tokio::test]
async fn streams_that_cannot_store_are_deleted_at_most_once_a_minute() {
    use pulse_poller::streams::{delete_unstorable, missing};
    use std::collections::{BTreeSet, HashMap};

    let nats = PrivateNats::start().await;
    let js = checks(async_nats::connect(&nats.url).await.unwrap());
    ensure_streams(&js).await;
    let bucket = format!("KV_{DEVICES_BUCKET}");
    for subject in [
        "pulse.v1.t.alerts",
        "pulse.v1.t.events.orders",
        "$KV.PULSE_DEVICES.t.d",
    ] {
        js.publish(subject, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let all: BTreeSet<String> = [STATE_STREAM, EVENTS_STREAM, &bucket]
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut tried = HashMap::new();
    let deleted = delete_unstorable(&js, &all, &mut tried).await;
    assert_eq!(deleted, [bucket.as_str(), EVENTS_STREAM, STATE_STREAM]);
    assert_eq!(missing(&js).await.unwrap().len(), 3);

    ensure_streams(&js).await;
    let deleted = delete_unstorable(&js, &all, &mut tried).await;
    assert!(deleted.is_empty(), "{deleted:?}");
    assert!(missing(&js).await.unwrap().is_empty());
}

/// A NATS configuration with JetStream, an `admin` user, and a `poller` user that may do
/// anything but create `refused`, when given.
fn poller_may_not_create(store: &std::path::Path, refused: Option<&str>) -> String {
    let publish = match refused {
        None => r#"allow: [">"]"#.to_owned(),
        Some(stream) => format!(r#"deny: ["$JS.API.STREAM.CREATE.{stream}"]"#),
    };
    pulse_test_support::nats::jetstream_with_user(store, "poller", &publish)
}

/// Deletes `stream`, asked until done: the server may not answer JetStream requests while it
/// reloads its accounts.
async fn deleted(js: &jetstream::Context, stream: &str) {
    eventually(
        &format!("{stream} deleted"),
        Duration::from_secs(10),
        || async {
            let _ = js.delete_stream(stream).await;
            streams::missing(js)
                .await
                .is_ok_and(|m| m.iter().any(|s| s == stream))
        },
    )
    .await;
}

/// A poller (as the `poller` user) on a server of its own that may create the bucket, once
/// event 1 of `orders` is relayed; with an admin's JetStream context on that server.
async fn relayed_as_the_poller_user(
    label: &str,
) -> (
    PrivateNats,
    ScratchDb,
    String,
    PollerHandle,
    jetstream::Context,
) {
    let nats = PrivateNats::configured(|store| poller_may_not_create(store, None), &[]).await;
    let admin = pulse_test_support::nats::connect(&nats.url_as("admin", "admin"))
        .await
        .unwrap();
    let js = checks(admin);
    let (db, tenant) = db_with_tenant(label, 2).await;
    let poller = spawn_as_the_poller_user(&nats, &db).await;
    poller.wait_ready().await;
    emit(&db, &tenant, 1).await;
    wait_all_relayed(&db, "event 1 relayed", Duration::from_secs(10)).await;
    (nats, db, tenant, poller, js)
}

/// A poller on `db` connecting to `nats` as the `poller` user.
async fn spawn_as_the_poller_user(nats: &PrivateNats, db: &ScratchDb) -> PollerHandle {
    let url = nats.url_as("poller", "poller");
    spawn_poller(config_with(db, &["--nats-url", &url])).await
}

/// [`relayed_as_the_poller_user`], then the poller stopped, and the events stream and the
/// bucket lost while none is active (with the bucket's creation refused).
async fn lost_while_no_poller_was_active(
    label: &str,
) -> (PrivateNats, ScratchDb, String, jetstream::Context) {
    let (nats, db, tenant, poller, js) = relayed_as_the_poller_user(label).await;
    poller.stop().await;
    lose_the_events_stream_and_the_bucket_half_restored(&nats, &js).await;
    (nats, db, tenant, js)
}

/// Deletes the events stream and the bucket with the poller refused the bucket's creation:
/// its set-up creates the events stream, then fails. Once the events stream is there again,
/// the poller may create the bucket.
async fn lose_the_events_stream_and_the_bucket_half_restored(
    nats: &PrivateNats,
    js: &jetstream::Context,
) {
    let bucket = streams::bucket_stream();
    nats.reconfigure(|store| poller_may_not_create(store, Some(&bucket)));
    // The bucket first: a set-up between the two deletions fails too.
    deleted(js, &bucket).await;
    deleted(js, EVENTS_STREAM).await;
}

/// Waits for the events stream the poller created again (with the bucket refused), then lets
/// the poller create the bucket.
async fn the_events_stream_back_then_the_bucket_allowed(
    nats: &PrivateNats,
    js: &jetstream::Context,
) {
    events_stream_back(js).await;
    nats.reconfigure(|store| poller_may_not_create(store, None));
}

/// Waits for the events stream the poller created again while the bucket is refused. Each
/// refused creation of the bucket costs the poller 10 s, the wait for an answer the server
/// never sends: one may start before the events stream is found missing, and hold it up.
async fn events_stream_back(js: &jetstream::Context) {
    eventually(
        "the events stream created again while the bucket is refused",
        Duration::from_secs(40),
        || async { js.get_stream(EVENTS_STREAM).await.is_ok() },
    )
    .await;
}

/// A set-up that created the events stream and then failed (the bucket refused) still refills
/// it from the outbox: the next try finds the stream there, and had to know it was lost.
#[tokio::test]
async fn an_events_stream_created_again_by_a_set_up_that_then_failed_is_refilled() {
    let (nats, _db, tenant, poller, js) = relayed_as_the_poller_user("half-restored").await;
    lose_the_events_stream_and_the_bucket_half_restored(&nats, &js).await;
    the_events_stream_back_then_the_bucket_allowed(&nats, &js).await;
    refilled_events(&js, &tenant, &[1]).await;
    refilled(&js, &tenant, None, "the bucket created once allowed").await;
    restored_and_stopped(poller).await;
}

/// The same at a poller's activation: streams lost while no poller was active, and a set-up
/// that creates the events stream and then fails.
#[tokio::test]
async fn an_events_stream_created_again_by_an_activation_that_then_failed_is_refilled() {
    let (nats, db, tenant, js) = lost_while_no_poller_was_active("half-activated").await;
    let poller = spawn_as_the_poller_user(&nats, &db).await;
    the_events_stream_back_then_the_bucket_allowed(&nats, &js).await;
    refilled_events(&js, &tenant, &[1]).await;
    poller.stop().await;
}

/// A relay pass that fails while the link is up (the events stream gone, and the poller may not
/// create it) is tried again with backoff, not at every event written: each try reads and
/// sends the whole backlog. Once the stream can be created, every event is there.
#[tokio::test]
async fn a_relay_that_cannot_store_tries_again_with_backoff_not_at_every_event() {
    let (nats, db, tenant, poller, js) = relayed_as_the_poller_user("relay-backoff").await;
    nats.reconfigure(|store| poller_may_not_create(store, Some(EVENTS_STREAM)));
    deleted(&js, EVENTS_STREAM).await;
    let before = poller.errors("relay").await;
    // 60 events over 6 s, each waking the relay.
    for n in 2..=61 {
        emit(&db, &tenant, n).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = poller.errors("relay").await - before;
    // Backoff from 0.2 s doubling to 5 s: about 8 tries in 6 s. One a wake-up: 60 and more.
    assert!((1.0..=20.0).contains(&failed), "{failed} failed passes");
    nats.reconfigure(|store| poller_may_not_create(store, None));
    refilled_events(&js, &tenant, &(1..=61).collect::<Vec<_>>()).await;
    poller.stop().await;
}

/// The same, the poller that found the events stream missing stopping before its set-up got
/// through: its successor finds the stream there, and still refills it (the outbox's events
/// were marked to be relayed again when the loss was found, not held in the first one's
/// memory).
#[tokio::test]
async fn an_events_stream_one_activation_found_lost_is_refilled_by_the_next() {
    let (nats, db, tenant, js) = lost_while_no_poller_was_active("half-handed").await;
    let first = spawn_as_the_poller_user(&nats, &db).await;
    events_stream_back(&js).await;
    first.stop().await;
    nats.reconfigure(|store| poller_may_not_create(store, None));
    let next = spawn_as_the_poller_user(&nats, &db).await;
    refilled_events(&js, &tenant, &[1]).await;
    next.stop().await;
}
