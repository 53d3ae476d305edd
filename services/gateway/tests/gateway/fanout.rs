//! What clients receive: the current value at once, live pushes in order, isolation, shared
//! NATS subscriptions, two gateways, slow clients.

use std::time::{Duration, Instant};

use serde_json::json;

use pulse_test_support::proxy::{Link, Proxy};

use crate::helpers::*;

#[tokio::test]
async fn the_current_snapshot_arrives_right_after_the_ack_and_never_an_older_one() {
    let tenant = unique("snap");
    let nats = nats().await;
    let subject = format!("pulse.v1.{tenant}.alerts");
    publish_retained(
        &nats,
        &subject,
        100,
        json!({"type": "alerts", "tenant_id": tenant, "alerts": [], "mark": "retained"}),
    )
    .await;

    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&tenant).await;
    let started = Instant::now();
    c.assert_subscribes(json!({"type": "alerts"})).await;
    let snapshot = c.next(T).await;
    assert_took_less_than(
        Duration::from_secs(1),
        started,
        "subscribe -> retained snapshot",
    );
    assert_eq!(snapshot["mark"], "retained");
    assert_eq!(snapshot["seq"], 100);

    // Live pushes follow; an older one arriving late is dropped.
    let push = |seq: u64, mark: &str| {
        publish(
            &nats,
            &subject,
            seq,
            json!({"type": "alerts", "mark": mark}),
        )
    };
    push(101, "live").await;
    assert_eq!(c.next(T).await["mark"], "live");
    push(99, "older").await;
    push(102, "newest").await;
    assert_eq!(c.next(T).await["mark"], "newest");

    // A second client of the same subject on this instance gets the newest value at once.
    let mut late = gw.viewer(&tenant).await;
    late.subscribe(json!({"type": "alerts"})).await;
    assert_eq!(late.next(T).await["seq"], 102);
}

#[tokio::test]
async fn telemetry_and_events_reach_subscribers_and_unsubscribe_stops_them() {
    let tenant = unique("push");
    register_devices(&tenant, ["dev-7"]).await;
    let nats = nats().await;
    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&tenant).await;
    c.subscribe(json!({"type": "device", "device_id": "dev-7"}))
        .await;
    c.subscribe(json!({"type": "events", "topic": "tickets"}))
        .await;
    let device = format!("pulse.v1.{tenant}.device.dev-7.telemetry");
    publish(
        &nats,
        &device,
        5,
        json!({"type": "telemetry", "device_id": "dev-7", "data": {"metrics": {"t": 1}}}),
    )
    .await;
    let got = c.until(T, |m| m["type"] == "telemetry").await;
    assert_eq!(got["data"]["metrics"]["t"], 1);
    publish(
        &nats,
        &format!("pulse.v1.{tenant}.events.tickets"),
        6,
        json!({"type": "event", "event": "ticket:update"}),
    )
    .await;
    assert_eq!(
        c.until(T, |m| m["type"] == "event").await["event"],
        "ticket:update"
    );

    c.send(json!({"action": "unsubscribe", "type": "device", "device_id": "dev-7"}))
        .await;
    assert_eq!(c.next(T).await["type"], "unsubscribed");
    publish(
        &nats,
        &device,
        7,
        json!({"type": "telemetry", "device_id": "dev-7"}),
    )
    .await;
    assert!(
        c.try_next(Duration::from_millis(300)).await.is_none(),
        "push after unsubscribe"
    );
}

#[tokio::test]
async fn a_message_published_right_after_subscribed_is_delivered() {
    // "subscribed" promises every later message: the gateway's NATS subscription must be in
    // place on the server before the reply, not merely queued on the gateway's socket.
    let tenant = unique("subrace");
    let nats = nats().await;
    let gw = spawn_gateway_with(|c| {
        c.client_msgs_per_second = 1000;
        c.client_msgs_burst = 1000;
    })
    .await;
    register_devices(&tenant, (1..200).step_by(2).map(|i| format!("dev-{i}"))).await;
    let mut c = gw.viewer(&tenant).await;
    // Events, and a snapshot subject with no retained value yet (a device never seen).
    for i in 0..200 {
        let (request, subject, body) = if i % 2 == 0 {
            let topic = format!("t{i}");
            (
                json!({"type": "events", "topic": topic}),
                format!("pulse.v1.{tenant}.events.{topic}"),
                json!({"type": "event", "topic": topic, "event": "x", "payload": {}}),
            )
        } else {
            let device = format!("dev-{i}");
            (
                json!({"type": "device", "device_id": device}),
                format!("pulse.v1.{tenant}.device.{device}.telemetry"),
                json!({"type": "telemetry", "device_id": device, "data": {}}),
            )
        };
        c.assert_subscribes(request).await;
        publish(&nats, &subject, 1, body.clone()).await;
        let m = c.next(T).await;
        assert_eq!(m["type"], body["type"], "message {i}: {m}");
        assert_eq!(m["topic"], body["topic"], "message {i}: {m}");
        assert_eq!(m["device_id"], body["device_id"], "message {i}: {m}");
    }
}

#[tokio::test]
async fn subscribed_means_in_place_on_the_server_even_over_a_slow_link() {
    // The gateway's link to NATS holds every chunk 40 ms: a SUB merely written to the socket
    // reaches the server well after a message published at once from nearby. The server has
    // no streams yet (a gateway started before the poller), so no stored copy can stand in
    // for a message the subscription missed. Each subscribe starts its subject.
    let tenant = unique("subslow");
    let server = PrivateNats::start().await;
    let nats = connect_nats(&server.url).await.unwrap();
    let proxy = Proxy::to(server.url.trim_start_matches("nats://").to_owned()).await;
    let gw = spawn_gateway_with(|c| c.nats.url = format!("nats://127.0.0.1:{}", proxy.port)).await;
    let mut c = gw.viewer(&tenant).await;
    proxy.set(Link::Slow(Duration::from_millis(40)));
    let cases = [
        (
            json!({"type": "alerts"}),
            format!("pulse.v1.{tenant}.alerts"),
            json!({"type": "alerts", "alerts": []}),
        ),
        (
            json!({"type": "fleet"}),
            format!("pulse.v1.{tenant}.fleet"),
            json!({"type": "fleet", "devices": []}),
        ),
        (
            json!({"type": "events", "topic": "slow"}),
            format!("pulse.v1.{tenant}.events.slow"),
            json!({"type": "event", "topic": "slow", "event": "x", "payload": {}}),
        ),
    ];
    for (request, subject, body) in cases {
        c.assert_subscribes(request.clone()).await;
        publish(&nats, &subject, 1, body.clone()).await;
        let m = c.next(T).await;
        assert_eq!(m["type"], body["type"], "after {request}: {m}");
    }
}

#[tokio::test]
async fn a_tenant_never_receives_another_tenants_messages_whatever_it_sends() {
    let a = unique("iso-a");
    let b = unique("iso-b");
    let nats = nats().await;
    let gw = spawn_gateway(config()).await;
    register_devices(&a, ["dev-1"]).await;
    register_devices(&b, ["dev-1"]).await;
    let mut eve = gw.viewer(&b).await;
    eve.subscribe(json!({"type": "alerts"})).await;
    eve.subscribe(json!({"type": "device", "device_id": "dev-1"}))
        .await;
    for hostile in [a.as_str(), ">", "*", &format!("{a}.alerts")] {
        let r = eve
            .subscribe(json!({"type": "events", "topic": hostile}))
            .await;
        // A's tenant id is a valid topic *within B*; the rest are refused outright.
        assert!(
            r["type"] == "subscribed" || r["code"] == "invalid_id",
            "{r}"
        );
    }
    let r = eve
        .subscribe(json!({"type": "alerts", "tenant_id": a}))
        .await;
    assert_eq!(
        r["type"], "subscribed",
        "a tenant_id field is ignored: the token decides"
    );

    for (subject, kind) in [
        (format!("pulse.v1.{a}.alerts"), "alerts"),
        (format!("pulse.v1.{a}.device.dev-1.telemetry"), "telemetry"),
        (format!("pulse.v1.{a}.events.{a}"), "event"),
    ] {
        publish(&nats, &subject, 1, json!({"type": kind, "secret": "for-a"})).await;
    }
    publish(
        &nats,
        &format!("pulse.v1.{b}.alerts"),
        2,
        json!({"type": "alerts", "mine": true}),
    )
    .await;
    let mine = eve.until(T, |m| m["type"] == "alerts").await;
    assert_eq!(mine["mine"], true);
    while let Some(m) = eve.try_next(Duration::from_millis(300)).await {
        assert_ne!(m["secret"], "for-a", "tenant B received A's data: {m}");
    }
}

#[tokio::test]
async fn many_clients_share_one_nats_subscription_released_by_the_last() {
    let tenant = unique("share");
    let gw = spawn_gateway(config()).await;
    let base = metric(&gw.metrics().await, "pulse_gateway_nats_subscriptions", &[]);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = gw.viewer(&tenant).await;
        c.subscribe(json!({"type": "fleet"})).await;
        clients.push(c);
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "pulse_gateway_nats_subscriptions", &[]),
        base + 1.0
    );
    assert!(metric(&m, "pulse_gateway_subscriptions", &[]) >= 20.0);
    let nats = nats().await;
    publish(
        &nats,
        &format!("pulse.v1.{tenant}.fleet"),
        1,
        json!({"type": "fleet", "n": 1}),
    )
    .await;
    for c in &mut clients {
        assert_eq!(c.until(T, |m| m["type"] == "fleet").await["n"], 1);
    }
    drop(clients);
    eventually("the NATS subscription is released", T, || async {
        metric(&gw.metrics().await, "pulse_gateway_nats_subscriptions", &[]) == base
    })
    .await;
}

#[tokio::test]
async fn clients_on_two_gateways_all_receive_every_message() {
    let tenant = unique("two");
    let g1 = spawn_gateway(config()).await;
    let g2 = spawn_gateway(config()).await;
    let mut on1 = g1.viewer(&tenant).await;
    let mut on2 = g2.viewer(&tenant).await;
    for c in [&mut on1, &mut on2] {
        c.subscribe(json!({"type": "events", "topic": "ops"})).await;
    }
    let nats = nats().await;
    for n in 1..=10 {
        publish(
            &nats,
            &format!("pulse.v1.{tenant}.events.ops"),
            n,
            json!({"type": "event", "n": n}),
        )
        .await;
    }
    for c in [&mut on1, &mut on2] {
        for n in 1..=10 {
            assert_eq!(c.next(T).await["n"], n);
        }
    }
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_others_and_is_conflated_or_closed() {
    let tenant = unique("slow");
    let gw = spawn_gateway_with(small_client_buffers).await;
    let mut fast = gw.viewer(&tenant).await;
    let mut slow = gw.viewer(&tenant).await;
    for c in [&mut fast, &mut slow] {
        c.subscribe(json!({"type": "fleet"})).await;
        c.subscribe(json!({"type": "events", "topic": "firehose"}))
            .await;
    }
    // `slow` stops reading from here on.
    let nats = nats().await;
    let pad = "x".repeat(16 * 1024);
    // How much it takes before the slow client's socket buffers are full and its snapshots
    // start to be conflated depends on the kernel's buffer sizes: publish until they are,
    // within a bound, while the fast client keeps reading.
    let started = Instant::now();
    let mut n = 0u64;
    let mut conflated = 0.0;
    while conflated == 0.0 {
        assert!(n < 4000, "no snapshot was conflated after {n} of 16 KiB");
        for _ in 0..50 {
            n += 1;
            publish(
                &nats,
                &format!("pulse.v1.{tenant}.fleet"),
                n,
                json!({"type": "fleet", "n": n, "pad": pad}),
            )
            .await;
        }
        let last = fast.until(Duration::from_secs(10), |m| m["n"] == n).await;
        assert_eq!(last["type"], "fleet");
        conflated = metric(&gw.metrics().await, "pulse_gateway_conflated_total", &[]);
    }
    assert_took_less_than(
        Duration::from_secs(30),
        started,
        "the fast client's pushes beside a slow one",
    );

    // Events cannot be conflated: the slow client falls behind and is closed with 4008,
    // while the fast one, reading as they come, gets every event in order.
    // 16 MiB of events: more than the slow client's socket buffers and queue can hold.
    const EVENTS: u64 = 1000;
    const BATCH: usize = 50;
    let (read_tx, mut read_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.last() != Some(&EVENTS) {
            let m = fast
                .until(Duration::from_secs(10), |m| m["type"] == "event")
                .await;
            let n = m["n"].as_u64().unwrap();
            seen.push(n);
            read_tx.send_replace(n);
        }
        seen
    });
    let all: Vec<u64> = (1..=EVENTS).collect();
    for batch in all.chunks(BATCH) {
        for &n in batch {
            publish(
                &nats,
                &format!("pulse.v1.{tenant}.events.firehose"),
                1000 + n,
                json!({"type": "event", "n": n, "pad": pad}),
            )
            .await;
        }
        // The next batch waits for the fast client (a test task, which a loaded machine may
        // run late): it never has more than BATCH events waiting, of the 200 its queue holds.
        // The client that never reads falls behind all the same.
        let last = batch[batch.len() - 1];
        let read = read_rx.wait_for(|&n| n >= last);
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(Ok(_)) => {}
            // The reader ended: its panic is reported below.
            Ok(Err(_)) => break,
            Err(_) => panic!("the fast client did not read event {last} within 10 s"),
        }
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=EVENTS).collect::<Vec<u64>>());
    eventually("slow consumer closed", Duration::from_secs(10), || async {
        metric(
            &gw.metrics().await,
            "pulse_gateway_slow_consumer_closes_total",
            &[],
        ) >= 1.0
    })
    .await;
    // The close frame reaches it once it reads what was already buffered for it, unless the
    // gateway had to drop the connection with the close still unsent.
    let outcome = slow.closed_or_dropped(Duration::from_secs(10)).await;
    assert!(matches!(outcome, Some(4008) | None), "{outcome:?}");
}

/// The NATS client drops what a subscription's buffer cannot hold (a slow consumer): the
/// gateway then reads the current snapshots and the events after each head again, so its
/// subscribers end with the newest snapshot and every event in order, the last ones too.
#[tokio::test]
async fn messages_the_nats_client_drops_for_a_full_buffer_are_read_again() {
    let gw = spawn_gateway_with(|c| c.nats_subscription_capacity = 4).await;
    let tenant = unique("dropped");
    let nats = nats().await;
    retain_alerts(&nats, &tenant, 1, "first").await;
    publish_event(&nats, &tenant, "t", 1).await;
    let mut alerts = gw.viewer(&tenant).await;
    alerts.assert_subscribes(json!({"type": "alerts"})).await;
    assert_eq!(alerts.next(T).await["seq"], 1);
    let mut events = gw.viewer(&tenant).await;
    let subscribed = events
        .assert_subscribes(json!({"type": "events", "topic": "t"}))
        .await;
    assert_eq!(subscribed["seq"], 1, "{subscribed}");
    // The gateway reads a new subject again 0.5 s and 5 s after its first read; past those
    // looks, only a read for the drops can bring what the burst loses.
    tokio::time::sleep(Duration::from_millis(5_500)).await;

    // One burst, far faster than a buffer of 4 is taken; both subjects are stored by their
    // streams as well.
    const LAST: u64 = 400;
    let alerts_subject = format!("pulse.v1.{tenant}.alerts");
    let events_subject = format!("pulse.v1.{tenant}.events.t");
    for seq in 2..=LAST {
        let (headers, payload) = sequenced(seq, json!({"type": "alerts", "v": seq}));
        nats.publish_with_headers(alerts_subject.clone(), headers, payload)
            .await
            .unwrap();
        let event = json!({"type": "event", "tenant_id": tenant, "topic": "t",
                           "event": "ticket:update", "payload": {"n": seq}});
        let (headers, payload) = sequenced(seq, event);
        nats.publish_with_headers(events_subject.clone(), headers, payload)
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();

    let newest = alerts
        .until(Duration::from_secs(10), |m| m["seq"] == LAST)
        .await;
    assert_eq!(newest["v"], LAST);
    assert_eq!(
        events_within(&mut events, LAST, Duration::from_secs(10)).await,
        (2..=LAST).collect::<Vec<u64>>()
    );
    let dropped = metric(
        &gw.metrics().await,
        "pulse_gateway_nats_slow_consumer_total",
        &[],
    );
    assert!(
        dropped > 0.0,
        "the burst overflowed no buffer: nothing was staged"
    );
}
