//! Messages bigger than the NATS server's `max_payload`: snapshots go out listing fewer items,
//! with counts that still cover every one, and telemetry readings are skipped, instead of
//! failing on every cycle.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::*;

/// The most a message may carry on the test's own server.
const MAX_PAYLOAD: usize = 16 * 1024;

/// The next message of `sub` within 10 s, parsed, with its size.
async fn next(sub: &mut async_nats::Subscriber) -> (usize, Value) {
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message within 10 s")
        .expect("the subscription is open");
    (
        msg.payload.len(),
        serde_json::from_slice(&msg.payload).unwrap(),
    )
}

/// A nats-server of the test's own whose `max_payload` is [`MAX_PAYLOAD`].
async fn small_payload_nats() -> PrivateNats {
    PrivateNats::configured(
        |store| format!("max_payload: {MAX_PAYLOAD}\njetstream {{ store_dir: {store:?} }}\n"),
        &[],
    )
    .await
}

#[tokio::test]
async fn a_fleet_too_big_for_max_payload_lists_the_least_healthy_devices_that_fit() {
    let nats = small_payload_nats().await;
    let url = nats.url.clone();
    let client = pulse_test_support::nats::connect(&url).await.unwrap();

    let db = ScratchDb::migrated("poller").await;
    // 600 devices make a fleet snapshot of about 70 KB; 3 make a small one.
    let big = db.tenant("big", 600).await;
    let small = db.tenant("small", 3).await;
    let mut big_fleet = subscribed(&client, format!("pulse.v1.{big}.fleet")).await;
    let mut small_fleet = subscribed(&client, format!("pulse.v1.{small}.fleet")).await;
    let poller = spawn_poller(config_with(&db, &["--nats-url", &url])).await;

    let (size, fleet) = next(&mut big_fleet).await;
    assert!(size <= MAX_PAYLOAD, "{size} bytes");
    assert_eq!(
        fleet["counts"]["total"], 600,
        "the counts still cover every device"
    );
    let listed = fleet["devices"].as_array().unwrap().len();
    assert!((50..600).contains(&listed), "{listed} devices listed");
    let (_, fleet) = next(&mut small_fleet).await;
    assert_eq!(fleet["devices"].as_array().unwrap().len(), 3);

    let metrics = poller.metrics().await;
    assert!(metric(&metrics, "pulse_poller_trimmed_total", &["kind=\"fleet\""]) >= 1.0);
    assert_eq!(
        metric(&metrics, "pulse_poller_trimmed_total", &["kind=\"alerts\""]),
        0.0
    );
    poller.stop().await;
}

#[tokio::test]
async fn a_telemetry_reading_too_big_for_max_payload_is_skipped_and_the_next_go_out() {
    let nats = small_payload_nats().await;
    let client = pulse_test_support::nats::connect(&nats.url).await.unwrap();
    let (db, tenant) = db_with_tenant("huge", 2).await;
    let mut telemetry = subscribed(&client, format!("pulse.v1.{tenant}.device.*.telemetry")).await;
    let poller = spawn_poller(config_on(&db, &nats)).await;
    poller.wait_ready().await;
    let metrics = || async { poller.metrics().await };

    db.reading(
        &tenant,
        "dev-1",
        json!({"blob": "x".repeat(2 * MAX_PAYLOAD)}),
    )
    .await;
    db.reading(&tenant, "dev-2", json!({"n": 1})).await;
    let (_, reading) = next(&mut telemetry).await;
    assert_eq!(reading["device_id"], "dev-2");
    eventually(
        "the reading counted as oversized",
        Duration::from_secs(5),
        || async {
            metric(
                &metrics().await,
                "pulse_poller_oversized_total",
                &["kind=\"telemetry\""],
            ) == 1.0
        },
    )
    .await;
    // Not tried again and again: no publish error from here on.
    let errors = metric(&metrics().await, "pulse_poller_errors_total", &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&metrics().await, "pulse_poller_errors_total", &[]),
        errors
    );

    // The device's next reading that fits goes out; the oversized one is counted once.
    db.reading(&tenant, "dev-1", json!({"n": 2})).await;
    let (_, reading) = next(&mut telemetry).await;
    assert_eq!(reading["device_id"], "dev-1");
    assert_eq!(reading["data"]["metrics"], json!({"n": 2}));
    let metrics = metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "pulse_poller_oversized_total",
            &["kind=\"telemetry\""]
        ),
        1.0
    );
    poller.stop().await;
}
