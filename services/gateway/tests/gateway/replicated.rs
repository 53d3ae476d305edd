//! Replicated streams (`--stream-replicas 3`, a three-node cluster of private nats-servers): a
//! replica can answer a read a moment before it holds what its leader acknowledged. A
//! subscriber on a gateway connected to such a replica still gets the newest snapshot and
//! every event the stream acknowledged before it subscribed, and may subscribe to a device the
//! device registry listed; a stream electing a leader still answers from its replicas.

use std::time::Duration;

use pulse_proto::subject::{DEVICES_BUCKET, EVENTS_STREAM, STATE_STREAM};
use pulse_test_support::nats_cluster::{Cluster, RoutedPair};
use serde_json::{Value, json};

use crate::helpers::*;

/// Tenants subscribed to at once.
const TENANTS: usize = 20;

/// Longer than the gateway takes to look at a subject for the last time after reading it
/// (5 s), with room for a loaded machine.
const AFTER_THE_LAST_LOOK: Duration = Duration::from_secs(10);

/// How long a stream whose leader's node is gone takes to answer again, at most: the election
/// (seconds; longer when the node hangs rather than dies), then the gateway's next read.
const ELECTION: Duration = Duration::from_secs(25);

/// A cluster whose streams node 0 leads, written to through node 0, and a gateway connected to
/// node 1, whose replicas the gateway's direct gets reach first.
async fn cluster_with_gateway() -> (Cluster, async_nats::jetstream::Context, Gateway) {
    cluster_with_gateway_on(1).await
}

/// [`cluster_with_gateway`], the gateway connected to node `node`.
async fn cluster_with_gateway_on(
    node: usize,
) -> (Cluster, async_nats::jetstream::Context, Gateway) {
    cluster_with_gateway_configured(node, |_| {}).await
}

/// [`cluster_with_gateway_on`], the gateway configured by `configure` too.
async fn cluster_with_gateway_configured(
    node: usize,
    configure: impl FnOnce(&mut pulse_gateway::GatewayConfig),
) -> (Cluster, async_nats::jetstream::Context, Gateway) {
    let cluster = Cluster::start().await;
    let writer = connect_nats(&cluster.nodes[0].url()).await.unwrap();
    let js = async_nats::jetstream::new(writer.clone());
    ensure_streams_with(&js, &["--stream-replicas", "3"]).await;
    for stream in [STATE_STREAM, EVENTS_STREAM, &format!("KV_{DEVICES_BUCKET}")] {
        cluster.lead(&writer, stream, 0).await;
    }
    let url = cluster.nodes[node].url();
    let gateway = spawn_gateway_with(|c| {
        c.nats.url = url;
        configure(c);
    })
    .await;
    (cluster, js, gateway)
}

/// Stores an alerts snapshot and a `tickets` event of `tenant`, numbered `seq`.
async fn store(js: &async_nats::jetstream::Context, tenant: &str, seq: u64) {
    let alerts = format!("pulse.v1.{tenant}.alerts");
    publish_stored(js, &alerts, seq, json!({"type": "alerts"})).await;
    let tickets = format!("pulse.v1.{tenant}.events.tickets");
    let event = json!({"type": "event", "topic": "tickets"});
    publish_stored(js, &tickets, seq, event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_a_replica_behind_its_leader_get_the_newest_snapshot_and_every_event() {
    let (cluster, js, gw) = cluster_with_gateway().await;
    // The gateway has read both streams before (a subscriber of another tenant).
    let warm = unique("replicated");
    store(&js, &warm, 1).await;
    let mut w = gw.viewer(&warm).await;
    w.assert_subscribes(json!({"type": "alerts"})).await;
    w.assert_subscribes(json!({"type": "events", "topic": "tickets", "since": 0}))
        .await;
    w.until(T, |m| m["type"] == "event").await;

    let mut viewers = Vec::new();
    for _ in 0..TENANTS {
        let tenant = unique("replicated");
        store(&js, &tenant, 1).await;
        let c = gw.viewer(&tenant).await;
        viewers.push((tenant, c));
    }
    // Node 1 stops while the leader and node 2 store and acknowledge the newest.
    cluster.pause(1);
    for (tenant, _) in &viewers {
        for seq in [2, 3] {
            store(&js, tenant, seq).await;
        }
    }
    // The gateway asks node 1, and node 1 answers once it goes on, still behind its leader
    // for a moment.
    for (_, c) in &mut viewers {
        for request in [
            json!({"action": "subscribe", "type": "alerts"}),
            json!({"action": "subscribe", "type": "events", "topic": "tickets", "since": 1}),
        ] {
            c.send(request).await;
        }
    }
    for (_, c) in &mut viewers {
        c.until(T, |m| m["type"] == "subscribed" && m["channel"] == "events")
            .await;
    }
    cluster.resume(1);

    let mut short = Vec::new();
    for (tenant, c) in &mut viewers {
        let (mut alerts, mut events) = (Vec::new(), Vec::new());
        while alerts.last() != Some(&3) || events.last() != Some(&3) {
            let Some(m) = c.try_next(T).await else { break };
            match m["type"].as_str() {
                Some("alerts") => alerts.push(m["seq"].as_u64().unwrap()),
                Some("event") => events.push(m["seq"].as_u64().unwrap()),
                // A reset would say events are missing: the stream acknowledged them all.
                Some("events_reset") => panic!("{tenant}: {m}"),
                _ => {}
            }
        }
        // Older snapshots may come first; the newest comes, and every event once.
        if alerts.last() != Some(&3) || events != [2, 3] {
            short.push((tenant.clone(), alerts, events));
        }
    }
    assert!(
        short.is_empty(),
        "of {TENANTS} subscribers, these missed what the leader acknowledged (tenant, alerts \
         seqs, tickets seqs resumed from 1): {short:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_current_value_and_a_resume_while_the_streams_have_no_leader() {
    let (mut cluster, js, gw) = cluster_with_gateway().await;
    let tenant = unique("replicated");
    let subject = format!("pulse.v1.{tenant}.alerts");
    publish_stored(&js, &subject, 7, json!({"type": "alerts", "v": 7})).await;
    let events = format!("pulse.v1.{tenant}.events.tickets");
    for seq in 1..=3 {
        let event = json!({"type": "event", "topic": "tickets", "payload": {"n": seq}});
        publish_stored(&js, &events, seq, event).await;
    }
    let mut c = gw.viewer(&tenant).await;
    // The leaders' node goes: each stream elects another, which takes seconds. This gateway
    // has read neither stream yet.
    cluster.kill(0);
    c.assert_subscribes(json!({"type": "alerts"})).await;
    let first = c.until(T, |m| m["type"] == "alerts").await;
    assert_eq!(first["seq"], 7, "{first}");
    c.assert_subscribes(json!({"type": "events", "topic": "tickets", "since": 1}))
        .await;
    // Once a new leader answers (a replica's answer may be short): within seconds.
    assert_eq!(events_within(&mut c, 3, ELECTION).await, [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_answered_by_a_replica_behind_waits_for_the_new_leader() {
    // The gateway is on node 1, which is stopped while the topic's events are stored (by the
    // leader, node 0, and node 2): what the leader sent it waits in its socket, and the last
    // event's commit comes later, if ever.
    let (cluster, js, gw) = cluster_with_gateway_on(1).await;
    let tenant = unique("replicated");
    cluster.pause(1);
    let events = format!("pulse.v1.{tenant}.events.tickets");
    for seq in 1..=3 {
        let event = json!({"type": "event", "topic": "tickets", "payload": {"n": seq}});
        publish_stored(&js, &events, seq, event).await;
    }
    // The leader stops before telling node 1 more: until nodes 1 and 2 have elected a new
    // leader (seconds), the gateway's reads are answered by node 1's replica, which is behind.
    cluster.pause(0);
    cluster.resume(1);
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(json!({"type": "events", "topic": "tickets", "since": 1}))
        .await;
    // Every event after `since`, once the new leader answers: not what the replica had (it
    // may have had none, or not answered at all).
    assert_eq!(events_within(&mut c, 3, ELECTION).await, [2, 3]);
    cluster.resume(0);
}

/// Live events that arrive while a resume waits for the stream (here, for a new leader) are
/// held for the client and replayed after what it reads: more of them than its queue takes
/// (`PULSE_CLIENT_QUEUE_EVENTS`, 8 here) do not close it with 4008. The wait is the gateway's,
/// not the client's slowness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_held_while_a_resume_waits_for_the_stream_do_not_close_the_client() {
    let (cluster, js, gw) = cluster_with_gateway_configured(1, |c| c.client_queue_events = 8).await;
    let tenant = unique("replicated");
    store(&js, &tenant, 1).await;
    let live = connect_nats(&cluster.nodes[1].url()).await.unwrap();
    // The leaders' node stops: until nodes 1 and 2 elect another (seconds), the gateway's
    // reads are a replica's word, and the resume waits with the live events held.
    cluster.pause(0);
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(json!({"type": "events", "topic": "tickets", "since": 1}))
        .await;
    for seq in 2..=31 {
        publish_live_event(&live, &tenant, "tickets", seq).await;
    }
    live.flush().await.unwrap();
    assert_eq!(
        events_within(&mut c, 31, ELECTION).await,
        (2..=31).collect::<Vec<_>>()
    );
    cluster.resume(0);
}

/// A gap in the live events seen while the stream has no leader is not announced on a
/// replica's word: the missing event was sent live while the gateway was away and not
/// acknowledged, and the relay sends it again. That send reaches the gateway live before any
/// leader stores it, and fills the gap: the subscriber gets it, in order, without a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_seen_while_the_stream_has_no_leader_is_filled_by_the_relays_send_again() {
    let (mut cluster, js, gw) = cluster_with_gateway().await;
    let tenant = unique("replicated");
    store(&js, &tenant, 1).await;
    let mut c = gw.viewer(&tenant).await;
    let told = c
        .assert_subscribes(json!({"type": "events", "topic": "tickets"}))
        .await;
    assert_eq!(told["seq"], 1, "{told}");

    // The leaders' node goes. Event 3 reaches the gateway live: the stream's replicas hold
    // event 1 only, and none of them can be asked for more until a new leader is elected.
    cluster.kill(0);
    let live = connect_nats(&cluster.nodes[1].url()).await.unwrap();
    publish_live_event(&live, &tenant, "tickets", 3).await;
    // The relay sends event 2 again, live, while the stream elects a leader.
    publish_live_event(&live, &tenant, "tickets", 2).await;
    assert_eq!(events_within(&mut c, 3, ELECTION).await, [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_stream_stores_only_after_a_new_subscriber_read_it_still_reaches_that_subscriber()
{
    // On the leader's own server: a message is sent to the subscriptions there when it
    // arrives, and stored once the replicas have it.
    let (cluster, js, gw) = cluster_with_gateway_on(0).await;
    let tenant = unique("replicated");
    store(&js, &tenant, 1).await;
    let mut c = gw.viewer(&tenant).await;

    // With both replicas stopped, the newest is sent to no one (nothing is subscribed yet)
    // and not stored (no quorum) ...
    cluster.pause(1);
    cluster.pause(2);
    let alerts = format!("pulse.v1.{tenant}.alerts");
    let tickets = format!("pulse.v1.{tenant}.events.tickets");
    let mut acks = Vec::new();
    for (subject, body) in [
        (&alerts, json!({"type": "alerts"})),
        (&tickets, json!({"type": "event", "topic": "tickets"})),
    ] {
        let (headers, payload) = sequenced(2, body);
        let ack = js.publish_with_headers(subject.clone(), headers, payload);
        acks.push(ack.await.unwrap());
    }
    // ... when the client subscribes, and the gateway's reads find what was stored before.
    // (The publishes must have reached the server first: a flush only writes them to the
    // socket, and the gateway's subscription could be read before them and get seq 2 live.)
    pulse_test_support::nats::round_trip(&js.client()).await;
    c.assert_subscribes(json!({"type": "alerts"})).await;
    let first = c.until(T, |m| m["type"] == "alerts").await;
    assert_eq!(first["seq"], 1, "{first}");
    let told = c
        .assert_subscribes(json!({"type": "events", "topic": "tickets"}))
        .await;
    assert_eq!(told["seq"], 1, "{told}");

    // The replicas go on, the stream stores both, and the client gets both: from the gateway's
    // second look at the subject, taken half a second after its read, or from its third, 5 s
    // after it when the replicas took longer to store them (a loaded machine). Waiting 5 s from
    // here would race that third look.
    cluster.resume(1);
    cluster.resume(2);
    for ack in acks {
        ack.await.unwrap();
    }
    let newest = c
        .until(AFTER_THE_LAST_LOOK, |m| m["type"] == "alerts")
        .await;
    assert_eq!(newest["seq"], 2, "{newest}");
    assert_eq!(events_within(&mut c, 2, AFTER_THE_LAST_LOOK).await, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_listed_while_the_gateways_replica_was_behind_can_be_subscribed_to() {
    let (cluster, js, gw) = cluster_with_gateway().await;
    let mut registry = pulse_poller::registry::DeviceRegistry::open(&js, 3)
        .await
        .unwrap();
    let mut viewers = Vec::new();
    for _ in 0..TENANTS {
        let tenant = unique("replicated");
        let id = pulse_proto::TenantId::parse(&tenant).unwrap();
        registry.sync(&id, ["dev-0"]).await.unwrap();
        let c = gw.viewer(&tenant).await;
        viewers.push((tenant, c));
    }
    // The gateway has read the registry before.
    viewers[0]
        .1
        .assert_subscribes(json!({"type": "device", "device_id": "dev-0"}))
        .await;
    // Listed while node 1, which the gateway reads the registry from, is stopped.
    cluster.pause(1);
    let devices: Vec<String> = (0..10).map(|n| format!("dev-{n}")).collect();
    for (tenant, _) in &viewers {
        let tenant = pulse_proto::TenantId::parse(tenant).unwrap();
        registry
            .sync(&tenant, devices.iter().map(String::as_str))
            .await
            .unwrap();
    }
    for (_, c) in &mut viewers {
        c.send(json!({"action": "subscribe", "type": "device", "device_id": "dev-9"}))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    cluster.resume(1);
    let mut refused = Vec::new();
    for (tenant, c) in &mut viewers {
        let reply = c
            .until(T, |m| m["type"] == "subscribed" || m["type"] == "error")
            .await;
        if reply["type"] != "subscribed" {
            refused.push((tenant.clone(), reply));
        }
    }
    assert!(
        refused.is_empty(),
        "of {TENANTS} subscribers to a listed device, these were refused: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_can_be_subscribed_to_while_the_registry_has_no_leader() {
    let (mut cluster, js, gw) = cluster_with_gateway().await;
    let mut c = viewer_of_a_listed_device(&js, &gw).await;
    // The registry's leader goes, and the bucket elects another, which takes seconds. This
    // gateway has not read the registry yet; its own node holds a replica.
    cluster.kill(0);
    let reply = subscribe_to_device(&mut c, "dev-0").await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

/// A "no" only a replica gave may be a device listed a moment ago: while the registry's leader
/// cannot confirm it, the client is told `unavailable` (it asks again), and `unknown_device`
/// once a leader says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_only_a_replica_denies_is_unavailable_until_a_leader_confirms() {
    let (mut cluster, js, gw) = cluster_with_gateway().await;
    let mut c = viewer_of_a_listed_device(&js, &gw).await;
    assert_eq!(
        ask_for_ghost(&mut c).await,
        "unknown_device",
        "with a leader"
    );
    cluster.kill(0);
    assert_eq!(
        ask_for_ghost(&mut c).await,
        "unavailable",
        "while the bucket elects a leader"
    );
    let deadline = std::time::Instant::now() + ELECTION;
    loop {
        let code = ask_for_ghost(&mut c).await;
        if code == "unknown_device" {
            break;
        }
        assert_eq!(code, "unavailable");
        assert!(
            std::time::Instant::now() < deadline,
            "no leader confirmed within {ELECTION:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.assert_alive().await;
}

/// Subscribes to a device the tenant does not have; the error code the gateway answers.
async fn ask_for_ghost(c: &mut Client) -> String {
    let reply = subscribe_to_device(c, "ghost").await;
    assert_eq!(reply["type"], "error", "{reply}");
    reply["code"].as_str().unwrap_or_default().to_owned()
}

/// Subscribes to `device`; the gateway's answer, `subscribed` or `error`.
async fn subscribe_to_device(c: &mut Client, device: &str) -> serde_json::Value {
    c.send(json!({"action": "subscribe", "type": "device", "device_id": device}))
        .await;
    c.until(T, |m| m["type"] == "subscribed" || m["type"] == "error")
        .await
}

/// A viewer of a new tenant whose registry lists `dev-0` (written through `js`).
async fn viewer_of_a_listed_device(js: &async_nats::jetstream::Context, gw: &Gateway) -> Client {
    let mut registry = pulse_poller::registry::DeviceRegistry::open(js, 3)
        .await
        .unwrap();
    let tenant = unique("replicated");
    let id = pulse_proto::TenantId::parse(&tenant).unwrap();
    registry.sync(&id, ["dev-0"]).await.unwrap();
    gw.viewer(&tenant).await
}

/// A snapshot and an event published at one server of a cluster while its route to the
/// gateway's server is down are stored by the streams but never reach the gateway live. The
/// periodic check of the subjects in use (`PULSE_STREAM_CHECK_SECONDS`, 1 s here) hands both
/// out once the route is back; nothing else would before the subject changed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_lost_between_cluster_servers_reach_subscribers_at_the_next_check() {
    let pair = RoutedPair::start().await;
    let any = connect_nats(&pair.cluster.nodes[0].url()).await.unwrap();
    let any = async_nats::jetstream::new(any);
    // Written to at the server that holds both streams (one replica each, placed by the
    // servers: the events stream is created again until it lands beside the other), read at
    // the other server.
    ensure_streams_with(&any, &[]).await;
    let holder = pair.holder(&any, STATE_STREAM).await;
    let mut tries = 0;
    while pair.holder(&any, EVENTS_STREAM).await != holder {
        tries += 1;
        assert!(
            tries < 20,
            "the events stream never landed beside the state stream"
        );
        any.delete_stream(EVENTS_STREAM).await.unwrap();
        ensure_streams_with(&any, &[]).await;
    }
    let writer = connect_nats(&pair.cluster.nodes[holder].url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(writer);
    let url = pair.cluster.nodes[1 - holder].url();
    let gw = spawn_gateway_with(|c| {
        c.nats.url = url;
        c.stream_check = Duration::from_secs(1);
    })
    .await;
    let tenant = unique("partitioned");
    store(&js, &tenant, 1).await;
    let mut c = gw.viewer(&tenant).await;
    // Both asked at once: a reply waited for alone would pass over the first's snapshot.
    for request in [
        json!({"action": "subscribe", "type": "alerts"}),
        json!({"action": "subscribe", "type": "events", "topic": "tickets", "since": 0}),
    ] {
        c.send(request).await;
    }
    assert_eq!(alerts_and_event(&mut c, T).await, (json!(1), json!(1)));
    // The gateway reads a new subject again 0.5 s and 5 s after its first read, and a read
    // that fails is retried until it answers: either would bring what was lost. The partition
    // comes after them, when nothing but the check reads the subjects.
    tokio::time::sleep(AFTER_THE_LAST_LOOK).await;

    pair.set_routed(false).await;
    store(&js, &tenant, 2).await;
    pair.set_routed(true).await;
    let within = AFTER_THE_LAST_LOOK;
    assert_eq!(alerts_and_event(&mut c, within).await, (json!(2), json!(2)));
    let scrape = gw.metrics().await;
    assert_eq!(
        metric(&scrape, "pulse_gateway_snapshots_recovered_total", &[]),
        1.0
    );
    assert_eq!(
        metric(&scrape, "pulse_gateway_event_topics_behind_total", &[]),
        1.0
    );
}

/// The `seq` of the next alerts snapshot and the next event `c` gets, in whichever order they
/// come, each within `within`; panics on anything else but a `subscribed`.
async fn alerts_and_event(c: &mut Client, within: Duration) -> (Value, Value) {
    let (mut alerts, mut event): (Option<Value>, Option<Value>) = (None, None);
    loop {
        if let (Some(alerts), Some(event)) = (&alerts, &event) {
            return (alerts.clone(), event.clone());
        }
        let m = c.try_next(within).await;
        let m = m.unwrap_or_else(|| panic!("alerts {alerts:?}, event {event:?} so far"));
        match m["type"].as_str() {
            Some("alerts") if alerts.is_none() => alerts = Some(m["seq"].clone()),
            Some("event") if event.is_none() => event = Some(m["seq"].clone()),
            Some("subscribed") => {}
            _ => panic!("{m}"),
        }
    }
}
