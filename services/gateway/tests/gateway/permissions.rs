//! The NATS permissions documented for operators (deploy/k8s/nats/README.md) are enough for
//! the poller and the gateway to do their work (the web service needs no NATS) and refuse
//! what neither needs (no credentials, forged state, deleted streams), and the gateway's subscribe acknowledgement and event replay do not wait on a request those
//! permissions refuse.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;

use crate::helpers::*;

/// The `accounts { ... }` block of the operators' NATS guide, exactly as documented.
fn documented_accounts() -> String {
    let guide =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/nats/README.md");
    let text = std::fs::read_to_string(&guide).unwrap();
    let start = text.find("```hcl\n").expect("the guide has an hcl block") + "```hcl\n".len();
    let end = start + text[start..].find("```").unwrap();
    let block = text[start..end].to_string();
    assert!(block.contains("pulse-gateway"), "{block}");
    block
}

/// A nats-server with JetStream and the documented accounts, their passwords `poller-pw` and
/// `gateway-pw`, once the poller's user can connect.
async fn documented_nats() -> PrivateNats {
    let nats = PrivateNats::configured(
        |store| {
            format!(
                "jetstream {{ store_dir: {store:?} }}\n{}",
                documented_accounts()
            )
        },
        &[
            ("PULSE_POLLER_PASSWORD", "poller-pw"),
            ("PULSE_GATEWAY_PASSWORD", "gateway-pw"),
        ],
    )
    .await;
    wait_for_nats(&nats.url_as("pulse-poller", "poller-pw")).await;
    nats
}

#[tokio::test]
async fn the_documented_nats_permissions_let_every_service_work() {
    let nats = documented_nats().await;
    let url_as = |user: &str, password: &str| nats.url_as(user, password);

    // The poller creates the streams and publishes a retained snapshot.
    let poller = connect_nats(&url_as("pulse-poller", "poller-pw"))
        .await
        .unwrap();
    let tenant = unique("perm");
    // The active poller watches every tenant's snapshots for late ones.
    let mut watched = poller
        .subscribe(pulse_poller::late::WATCHED[0])
        .await
        .unwrap();
    poller.flush().await.unwrap();
    retain_alerts(&poller, &tenant, 3, "retained").await;
    let seen = tokio::time::timeout(T, watched.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.subject.as_str(), format!("pulse.v1.{tenant}.alerts"));
    // A poller becoming active reads the newest seq published, to start above it.
    let js = async_nats::jetstream::new(poller.clone());
    let floor = pulse_poller::streams::newest_seq(&js).await.unwrap();
    assert_eq!(floor, 3);

    let gw = spawn_gateway_with(|c| c.nats.url = url_as("pulse-gateway", "gateway-pw")).await;
    let mut c = gw.viewer(&tenant).await;

    // The current value comes from a direct get the gateway may make.
    c.assert_subscribes(json!({"type": "alerts"})).await;
    assert_eq!(c.next(T).await["v"], "retained");
    // The gateway's check of its streams is a read these permissions allow.
    let addr = gw.addr;
    eventually(
        "every stream shown readable",
        Duration::from_secs(15),
        || async {
            let info = readyz(addr).await.1["info"].clone();
            (
                info["stream_pulse_state"].as_str(),
                info["stream_pulse_events"].as_str(),
                info["stream_kv_pulse_devices"].as_str(),
            ) == (Some("readable"), Some("readable"), Some("readable"))
        },
    )
    .await;

    // An event subscription is acknowledged at once, and the first event after the ack,
    // relayed by the poller's user, arrives.
    c.subscribe_within(
        json!({"type": "events", "topic": "tickets"}),
        Duration::from_secs(1),
    )
    .await;
    let event = |seq: u64| json!({"type": "event", "topic": "tickets", "event": "ticket:update", "seq": seq, "payload": {}});
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    publish_retained(&poller, &subject, 1, event(1)).await;
    assert_eq!(c.next(T).await["seq"], 1);
    publish_retained(&poller, &subject, 2, event(2)).await;
    assert_eq!(c.next(T).await["seq"], 2);

    // A client resuming from `since` on a gateway that never served the topic is replayed
    // from the events stream.
    let second = spawn_gateway_with(|c| c.nats.url = url_as("pulse-gateway", "gateway-pw")).await;
    let mut resumed = second.viewer(&tenant).await;
    resumed
        .subscribe_within(
            json!({"type": "events", "topic": "tickets", "since": 0}),
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(resumed.next(T).await["seq"], 1);
    assert_eq!(resumed.next(T).await["seq"], 2);
    let replayed = metric(
        &second.metrics().await,
        "pulse_gateway_events_replayed_total",
        &[],
    );
    assert_eq!(replayed, 2.0);

    // Telemetry published by the poller's user reaches a device subscriber, once the poller
    // listed the device in the registry (which the gateway may read).
    register_devices_on(&poller, &tenant, ["dev-1"]).await;
    c.assert_subscribes(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    publish(
        &poller,
        &format!("pulse.v1.{tenant}.device.dev-1.telemetry"),
        1,
        json!({"type": "telemetry", "device_id": "dev-1", "data": {}}),
    )
    .await;
    assert_eq!(c.next(T).await["device_id"], "dev-1");
    // A device the registry's replica does not have is asked of its leader, which these
    // permissions allow: refused at once, not after the leader's read timed out (2 s).
    let asked = std::time::Instant::now();
    let refused = c
        .subscribe(json!({"type": "device", "device_id": "dev-unlisted"}))
        .await;
    assert_eq!(refused["code"], "unknown_device", "{refused}");
    assert_took_less_than(
        std::time::Duration::from_millis(1500),
        asked,
        "an unlisted device refused",
    );

    // A poller becoming active over many tenants reads the registry in one pass.
    use pulse_poller::registry::{DeviceRegistry, PER_TENANT_READS};
    let js = async_nats::jetstream::new(poller.clone());
    let mut registry = DeviceRegistry::open(&js, 1).await.unwrap();
    let many: Vec<pulse_proto::TenantId> = (0..=PER_TENANT_READS)
        .map(|n| pulse_proto::TenantId::parse(format!("{tenant}-{n}")).unwrap())
        .chain(pulse_proto::TenantId::parse(tenant.as_str()))
        .collect();
    registry.read_ahead(&many).await.unwrap();
    assert_eq!(registry.bucket_reads(), 1);
    let tenant_id = pulse_proto::TenantId::parse(tenant.as_str()).unwrap();
    assert_eq!(registry.devices(&tenant_id), 1);

    // Once the tenant is deleted, the poller purges all of it: state, events, device keys.
    // Read as the gateway reads: all there before, none of it after.
    let reader = async_nats::jetstream::new(
        connect_nats(&url_as("pulse-gateway", "gateway-pw"))
            .await
            .unwrap(),
    );
    let held = [
        ("PULSE_STATE", format!("pulse.v1.{tenant}.alerts")),
        (
            "PULSE_STATE",
            format!("pulse.v1.{tenant}.device.dev-1.telemetry"),
        ),
        ("PULSE_EVENTS", format!("pulse.v1.{tenant}.events.tickets")),
        (
            "KV_PULSE_DEVICES",
            format!("$KV.PULSE_DEVICES.{tenant}.dev-1"),
        ),
    ];
    let found = |stream: &'static str, subject: String| {
        let reader = reader.clone();
        async move {
            let stream = reader.get_stream(stream).await.unwrap();
            stream
                .direct_get_last_for_subject(subject)
                .await
                .map(|m| m.sequence)
                .map_err(|e| e.kind())
        }
    };
    for (stream, subject) in held.clone() {
        assert!(found(stream, subject.clone()).await.is_ok(), "{subject}");
    }
    pulse_poller::streams::purge_tenant(&js, &tenant_id)
        .await
        .unwrap();
    for (stream, subject) in held {
        assert_eq!(
            found(stream, subject.clone()).await,
            Err(async_nats::jetstream::stream::DirectGetErrorKind::NotFound),
            "{subject}"
        );
    }

    // The poller hears of a stream's deletion, and may delete a stream that cannot store to
    // create it again.
    let mut deletions = pulse_poller::streams::deletions(&poller).await.unwrap();
    poller.flush().await.unwrap();
    let unstorable = std::collections::BTreeSet::from(["PULSE_STATE".to_owned()]);
    let mut tried = std::collections::HashMap::new();
    let deleted = pulse_poller::streams::delete_unstorable(&js, &unstorable, &mut tried).await;
    assert_eq!(deleted, ["PULSE_STATE"]);
    let announced = tokio::time::timeout(T, deletions.next())
        .await
        .unwrap()
        .unwrap();
    let deletion: pulse_poller::streams::Deletion =
        serde_json::from_slice(&announced.payload).unwrap();
    assert_eq!(deletion.stream, "PULSE_STATE");
}

/// What the documented permissions refuse: a connection without credentials or with a wrong
/// password; the gateway forging state (a snapshot, a device registry entry) or deleting a
/// stream; the poller reading the tenants' subjects. A refused publish or subscribe is
/// reported to the connection as a permissions violation, and nothing forged is delivered.
#[tokio::test]
async fn the_documented_nats_permissions_refuse_what_a_service_does_not_need() {
    let nats = documented_nats().await;
    for url in [nats.url.clone(), nats.url_as("pulse-gateway", "wrong")] {
        let refused = tokio::time::timeout(T, pulse_test_support::nats::connect(&url)).await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "{url}: connected without the right credentials"
        );
    }

    let (gateway, gateway_errors) =
        connect_noting_errors(&nats.url_as("pulse-gateway", "gateway-pw")).await;
    let (poller, poller_errors) =
        connect_noting_errors(&nats.url_as("pulse-poller", "poller-pw")).await;
    let tenant = unique("refused");
    retain_alerts(&poller, &tenant, 1, "genuine").await;
    let observer = connect_nats(&nats.url_as("pulse-gateway", "gateway-pw"))
        .await
        .unwrap();
    let mut seen = observer
        .subscribe(format!("pulse.v1.{tenant}.>"))
        .await
        .unwrap();
    observer.flush().await.unwrap();

    // The gateway forges a snapshot: refused, and not delivered before the poller's next one.
    let alerts = format!("pulse.v1.{tenant}.alerts");
    gateway
        .publish(alerts.clone(), r#"{"v":"forged"}"#.into())
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    await_violation(&gateway_errors, &format!("publish to \"{alerts}\"")).await;
    poller
        .publish(alerts.clone(), r#"{"v":"marker"}"#.into())
        .await
        .unwrap();
    let first = tokio::time::timeout(T, seen.next()).await.unwrap().unwrap();
    assert_eq!(&first.payload[..], br#"{"v":"marker"}"#);

    // Nor may it write the device registry or delete a stream.
    gateway
        .publish(format!("$KV.PULSE_DEVICES.{tenant}.dev-1"), "{}".into())
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    await_violation(&gateway_errors, "publish to \"$KV.PULSE_DEVICES.").await;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(gateway.clone());
    assert!(js.delete_stream("PULSE_STATE").await.is_err());
    await_violation(
        &gateway_errors,
        "publish to \"$JS.API.STREAM.DELETE.PULSE_STATE\"",
    )
    .await;
    // Nor purge a tenant's subjects, which only the poller does once the tenant is deleted.
    let tenant_id = pulse_proto::TenantId::parse(tenant.as_str()).unwrap();
    assert!(
        pulse_poller::streams::purge_tenant(&js, &tenant_id)
            .await
            .is_err()
    );
    await_violation(
        &gateway_errors,
        "publish to \"$JS.API.STREAM.PURGE.KV_PULSE_DEVICES\"",
    )
    .await;
    let state = async_nats::jetstream::new(poller.clone());
    assert!(
        state.get_stream("PULSE_STATE").await.is_ok(),
        "the state stream is still there"
    );

    // The poller publishes the tenants' subjects but reads none of them beyond the snapshots.
    let _sub = poller
        .subscribe(format!("pulse.v1.{tenant}.>"))
        .await
        .unwrap();
    poller.flush().await.unwrap();
    await_violation(
        &poller_errors,
        &format!("subscription to \"pulse.v1.{tenant}.>\""),
    )
    .await;
}

/// A connection as `url` whose server errors are collected, lowercased, as they arrive.
async fn connect_noting_errors(
    url: &str,
) -> (
    async_nats::Client,
    std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
) {
    let errors = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let noted = errors.clone();
    let client = pulse_common::nats::with_url_credentials(async_nats::ConnectOptions::new(), url)
        .event_callback(move |event| {
            let noted = noted.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    noted.lock().push(e.to_string().to_lowercase());
                }
            }
        })
        .connect(url)
        .await
        .unwrap();
    (client, errors)
}

/// Waits until the server reported a permissions violation naming `what`.
async fn await_violation(errors: &parking_lot::Mutex<Vec<String>>, what: &str) {
    let what = what.to_lowercase();
    eventually(
        &format!("a permissions violation for {what}"),
        T,
        || async {
            errors
                .lock()
                .iter()
                .any(|e| e.contains("permissions violation") && e.contains(&what))
        },
    )
    .await;
}

/// A NATS configuration with JetStream, an `admin` user, and a `gw` user whose JetStream reads
/// are allowed or not.
fn jetstream_for_gateway(store: &std::path::Path, allowed: bool) -> String {
    let publish = if allowed {
        r#"allow: [">"]"#
    } else {
        r#"deny: ["$JS.API.>"]"#
    };
    pulse_test_support::nats::jetstream_with_user(store, "gw", publish)
}

#[tokio::test]
async fn a_subscriber_gets_the_current_value_once_jetstream_answers_again() {
    let mut nats = PrivateNats::configured(|store| jetstream_for_gateway(store, false), &[]).await;
    let url_as = |user: &str| nats.url_as(user, user);
    wait_for_nats(&url_as("admin")).await;
    let admin = connect_nats(&url_as("admin")).await.unwrap();
    let tenant = unique("jsback");
    retain_alerts(&admin, &tenant, 3, "retained").await;

    // Core NATS works for the gateway, JetStream does not: subscribing still answers.
    let gw = spawn_gateway_with(|c| c.nats.url = url_as("gw")).await;
    let mut c = gw.viewer(&tenant).await;
    // A JetStream that does not answer delays no reply: each subscribe is acknowledged at
    // once, not after the read of its current value gives up.
    let started = std::time::Instant::now();
    c.subscribe_within(json!({"type": "alerts"}), Duration::from_millis(500))
        .await;
    c.subscribe_within(json!({"type": "fleet"}), Duration::from_millis(500))
        .await;
    c.subscribe_within(
        json!({"type": "events", "topic": "tickets"}),
        Duration::from_millis(800),
    )
    .await;
    assert_took_less_than(
        Duration::from_millis(1500),
        started,
        "three subscribes without JetStream",
    );
    // A device's first subscribe waits for the device registry beside the connection: a ping
    // sent after it is answered at once, and the device is refused as unavailable afterwards,
    // once for each time it was asked.
    for _ in 0..2 {
        c.send(json!({"action": "subscribe", "type": "device", "device_id": "dev-1"}))
            .await;
    }
    let asked = std::time::Instant::now();
    c.send(json!({"action": "ping"})).await;
    let first = c
        .until(Duration::from_secs(5), |m| {
            m["type"] == "pong" || m["type"] == "error"
        })
        .await;
    assert_eq!(first["type"], "pong", "{first}");
    assert_took_less_than(
        Duration::from_millis(500),
        asked,
        "a pong behind a device subscribe",
    );
    for _ in 0..2 {
        let refused = c
            .until(Duration::from_secs(5), |m| m["type"] == "error")
            .await;
        assert_eq!(refused["code"], "unavailable", "{refused}");
        assert_eq!(refused["device_id"], "dev-1", "{refused}");
    }
    c.assert_alive().await;
    assert!(
        c.try_next(Duration::from_millis(2500)).await.is_none(),
        "no value can be read yet"
    );
    // One retry per snapshot subject (alerts, fleet), however often NATS reconnects and asks
    // for the values again; each resync's read waits up to 2 s before it gives up.
    let retries = || async { metric(&gw.metrics().await, "pulse_gateway_snapshot_retries", &[]) };
    assert_eq!(retries().await, 2.0);
    for _ in 0..2 {
        nats.stop().await;
        nats.start_again().await;
        answers_with(gw.addr, "/readyz", 200, T).await;
        // Looked at until well after the resync's read gave up.
        throughout("two retries, no more", Duration::from_secs(3), || async {
            retries().await == 2.0
        })
        .await;
    }

    // JetStream answers again (the permission comes back with a configuration reload): the
    // retained value arrives without any new publish.
    nats.reconfigure(|store| jetstream_for_gateway(store, true));
    let current = c
        .until(Duration::from_secs(15), |m| m["type"] == "alerts")
        .await;
    assert_eq!(current["v"], "retained");
    assert_eq!(current["seq"], 3);
    // The other subject's retry ends at its next read from the leader: it waits up to 5 s
    // between reads (full jitter), a read begun while JetStream was still refused gives up
    // after 3 s, and one made while the leader was taken to be away (a replica's answer) is
    // made again.
    let next_read = Duration::from_secs(20);
    eventually("the retries to end", next_read, || async {
        retries().await == 0.0
    })
    .await;
}

/// A subscriber told `seq` in `subscribed` gets every event after it. Events that reach the
/// gateway while a topic's first subscribe waits for JetStream (here it never answers, so the
/// wait is the whole 300 ms) are queued for the subscriber: the `seq` it is told must not
/// count them, or it would drop them as already seen.
#[tokio::test]
async fn events_arriving_while_a_subscribe_waits_for_jetstream_come_after_its_seq() {
    let nats = PrivateNats::configured(|store| jetstream_for_gateway(store, false), &[]).await;
    let url_as = |user: &str| nats.url_as(user, user);
    wait_for_nats(&url_as("admin")).await;
    let admin = connect_nats(&url_as("admin")).await.unwrap();
    let tenant = unique("evwait");
    let gw = spawn_gateway_with(|c| c.nats.url = url_as("gw")).await;
    let mut c = gw.viewer(&tenant).await;
    const LAST: u64 = 160;
    let publisher = tokio::spawn({
        let (admin, tenant) = (admin.clone(), tenant.clone());
        async move {
            for seq in 100..=LAST {
                publish_live_event(&admin, &tenant, "tickets", seq).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    c.send(json!({"action": "subscribe", "type": "events", "topic": "tickets"}))
        .await;
    let subscribed = c.until(T, |m| m["type"] == "subscribed").await;
    let first = c
        .until(T, |m| m["type"] == "event" || m["type"] == "events_reset")
        .await;
    assert_eq!(first["type"], "event", "{first}");
    let first = first["seq"].as_u64().unwrap();
    // Events came during the wait (the first is 100), so the position is known from them: the
    // last one before the subscriber joined, or, when it joined before the first, the one
    // before that first.
    let seq = subscribed["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no position in {subscribed}"));
    assert!(seq >= 99, "a position from before the events: {subscribed}");
    assert_eq!(first, seq + 1, "told {subscribed}, then came {first}");
    publisher.await.unwrap();
    assert_events(&mut c, first + 1..=LAST).await;
}
