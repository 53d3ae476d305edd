//! What an active poller settles before it publishes: the `seq` floor from the state stream,
//! the streams before the event relay, and the settings the triggers read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;
use pulse_poller::PollerConfig;
use pulse_poller::streams::newest_seq;
use pulse_proto::subject::EVENTS_STREAM;
use serde_json::Value;

use crate::helpers::*;

/// Stores `payload` on `subject`, with a `Pulse-Seq` header when `seq` is given; returns its
/// stream sequence.
async fn store(js: &jetstream::Context, subject: String, seq: Option<u64>) -> u64 {
    let mut headers = HeaderMap::new();
    if let Some(seq) = seq {
        headers.insert("Pulse-Seq", seq.to_string().as_str());
    }
    js.publish_with_headers(subject, headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

fn default_config() -> PollerConfig {
    parse_config(&["pulse-poller", "--database-url", "postgres://x@h/x"])
}

#[tokio::test]
async fn the_seq_floor_is_the_newest_seq_and_zero_only_when_there_is_none() {
    let nats = PrivateNats::start().await;
    let js = jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    ensure_streams(&js).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 0, "an empty stream");

    store(&js, "pulse.v1.t-a.alerts".into(), Some(42)).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 42);

    // A message with no seq (not a poller's) is newer: it has no seq to stay above, and the
    // newest that has one still holds the highest.
    store(&js, "pulse.v1.t-b.fleet".into(), None).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 42);
    // Its subject's newer message replaces the one with the seq: stepped over, as deleted.
    store(&js, "pulse.v1.t-a.alerts".into(), None).await;
    assert_eq!(
        newest_seq(&js).await.unwrap(),
        0,
        "no message left has a seq"
    );
    store(&js, "pulse.v1.t-c.alerts".into(), Some(43)).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 43);
    // A lower seq stored after it (a refused publish sent again after its batch, a deposed
    // poller's last one) does not lower the floor.
    store(&js, "pulse.v1.t-e.alerts".into(), Some(40)).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 43);
    // A seq past 2^53 - 1 is no poller's (a JavaScript number cannot hold it): passed over,
    // so it cannot push every later seq out of what browsers read exactly.
    store(&js, "pulse.v1.t-d.alerts".into(), Some(1 << 60)).await;
    assert_eq!(newest_seq(&js).await.unwrap(), 43);
}

/// Subjects purged at the stream's tail (an operator removing a tenant's values, a bench run
/// cleaning up after itself) leave deleted sequences behind the last message with a seq,
/// however many: it is still found, and without reading each deleted sequence one by one.
#[tokio::test]
async fn the_seq_floor_is_found_behind_any_number_of_purged_messages() {
    let nats = PrivateNats::start().await;
    let js = jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    ensure_streams(&js).await;
    store(&js, "pulse.v1.kept.alerts".into(), Some(77)).await;
    let mut last = 0;
    for device in 0..2500 {
        let subject = format!("pulse.v1.gone.device.d{device}.telemetry");
        last = store(&js, subject, Some(1_000 + device)).await;
    }
    let mut stream = js
        .get_stream(pulse_proto::subject::STATE_STREAM)
        .await
        .unwrap();
    stream.purge().filter("pulse.v1.gone.>").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!((state.messages, state.last_sequence), (1, last));
    assert_eq!(newest_seq(&js).await.unwrap(), 77);
}

/// A NATS configuration with JetStream, an `admin` user, and a `poller` user that may read
/// messages of the state stream or not.
fn poller_may_read_messages(store: &std::path::Path, allowed: bool) -> String {
    let publish = if allowed {
        r#"allow: [">"]"#
    } else {
        r#"deny: ["$JS.API.STREAM.MSG.GET.PULSE_STATE"]"#
    };
    pulse_test_support::nats::jetstream_with_user(store, "poller", publish)
}

/// A poller that cannot read the newest seq published waits, and says so, rather than
/// publishing from a floor of zero; once it can, it starts above that seq.
#[tokio::test]
async fn a_poller_does_not_publish_until_it_knows_the_newest_seq() {
    let nats = PrivateNats::configured(|store| poller_may_read_messages(store, false), &[]).await;
    let admin = pulse_test_support::nats::connect(&nats.url_as("admin", "admin"))
        .await
        .unwrap();
    let js = jetstream::new(admin.clone());
    ensure_streams(&js).await;
    let (db, tenant) = db_with_tenant("floor", 1).await;
    // The newest seq published, an hour ahead of this clock.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let ahead = (now + Duration::from_secs(3600)).as_micros() as u64;
    store(
        &js,
        format!("pulse.v1.{}.alerts", unique("floor-other")),
        Some(ahead),
    )
    .await;
    let mut alerts = subscribed(&admin, format!("pulse.v1.{tenant}.alerts")).await;

    let url = nats.url_as("poller", "poller");
    let poller = spawn_poller(config_with(&db, &["--nats-url", &url])).await;
    poller
        .wait_active_and_waiting("waiting for the newest seq", Duration::from_secs(20))
        .await;
    let early = tokio::time::timeout(Duration::from_secs(1), alerts.next()).await;
    assert!(early.is_err(), "published before the seq floor was known");

    nats.reconfigure(|store| poller_may_read_messages(store, true));
    let first = tokio::time::timeout(Duration::from_secs(20), alerts.next())
        .await
        .expect("a snapshot once the seq floor is known")
        .unwrap();
    let snapshot: Value = serde_json::from_slice(&first.payload).unwrap();
    assert!(
        snapshot["seq"].as_u64().unwrap() > ahead,
        "{snapshot} not above {ahead}"
    );
    poller.wait_ready().await;
    poller.stop().await;
}

/// An events stream of the old numbering is emptied once when the poller sets up the
/// streams; the relay must not run before, or the events it relayed go with it, marked
/// relayed. Staged with a stream set-up that fails after that emptying, again and again.
#[tokio::test]
async fn the_relay_waits_until_the_streams_are_set_up() {
    let nats = PrivateNats::start().await;
    let js = jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    let mut old = pulse_poller::streams::events_stream(&default_config());
    old.description = Some("Pulse events, seq shared by every topic".into());
    js.create_stream(old).await.unwrap();
    // Takes the alerts subjects, so the state stream cannot be made.
    js.create_stream(stream::Config {
        name: "BLOCKER".into(),
        subjects: vec!["pulse.v1.*.alerts".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    let (db, tenant) = db_with_tenant("retire", 0).await;
    sqlx::query("SELECT pulse_emit_event($1, 'orders', 'order:new', '{\"id\": 1}')")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    let poller = spawn_poller(config_on(&db, &nats)).await;
    poller
        .wait_active_and_waiting("waiting for JetStream", Duration::from_secs(10))
        .await;
    // The relay would have run at once, then every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        unrelayed(&db).await,
        1,
        "relayed before the streams were set up"
    );

    js.delete_stream("BLOCKER").await.unwrap();
    poller.wait_ready().await;
    wait_all_relayed(&db, "the event relayed", Duration::from_secs(10)).await;
    let stored = stored_events(&js, &format!("pulse.v1.{tenant}.events.orders")).await;
    assert_eq!(stored.len(), 1, "the relayed event is in the events stream");
    let description = js
        .get_stream(EVENTS_STREAM)
        .await
        .unwrap()
        .cached_info()
        .config
        .description
        .clone();
    assert_eq!(
        description.as_deref(),
        Some(pulse_poller::streams::EVENTS_DESCRIPTION)
    );
    poller.stop().await;
}

/// Thresholds given in milliseconds reach the triggers and the web service as given, not
/// cut to whole seconds.
#[tokio::test]
async fn thresholds_below_a_second_are_recorded_to_the_millisecond() {
    let db = ScratchDb::migrated("poller").await;
    let config = config_with(
        &db,
        &[
            "--stale-after-seconds",
            "1500ms",
            "--offline-after-seconds",
            "2250ms",
        ],
    );
    let poller = spawn_active(config).await;
    eventually("the settings written", Duration::from_secs(10), || async {
        let mut conn = db.pool.acquire().await.unwrap();
        let applied = pulse_db::settings::read(&mut conn).await.unwrap();
        applied.thresholds.stale_after == Duration::from_millis(1500)
            && applied.thresholds.offline_after == Duration::from_millis(2250)
    })
    .await;
    let stale: f64 = sqlx::query_scalar("SELECT extract(epoch FROM pulse_stale_after())::float8")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stale, 1.5, "what the triggers apply");
    poller.stop().await;
}

#[tokio::test]
async fn settings_the_poller_cannot_write_at_first_are_written_once_it_can() {
    let db = ScratchDb::migrated("poller").await;
    sqlx::query("REVOKE INSERT, UPDATE ON pulse_settings FROM pulse_poller")
        .execute(&db.pool)
        .await
        .unwrap();
    let config = config_with(&db, &["--stale-after-seconds", "77"]);
    let poller = spawn_active(config).await;
    let recorded = || async {
        let mut conn = db.pool.acquire().await.unwrap();
        let applied = pulse_db::settings::read(&mut conn).await.unwrap();
        applied.thresholds.stale_after == Duration::from_secs(77)
    };
    poller
        .wait_metric(
            "a failed write counted",
            "pulse_poller_errors_total",
            &["database"],
            1.0,
        )
        .await;
    assert!(!recorded().await, "written without the right to");
    sqlx::query("GRANT INSERT, UPDATE ON pulse_settings TO pulse_poller")
        .execute(&db.pool)
        .await
        .unwrap();
    eventually("the settings written", Duration::from_secs(10), recorded).await;
    poller.stop().await;
}
