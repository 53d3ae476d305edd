//! Events are never silently lost: per-topic order, replay with `since` on any gateway, a
//! reset whenever events cannot be delivered, and resuming after every way a connection ends.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use pulse_test_support::proxy::{Link, Proxy};

use crate::helpers::*;

fn events(topic: &str, since: Option<u64>) -> Value {
    match since {
        Some(since) => json!({"type": "events", "topic": topic, "since": since}),
        None => json!({"type": "events", "topic": topic}),
    }
}

/// A tenant of its own, the shared NATS and a gateway: what most of these tests start from.
async fn setup(label: &str) -> (String, async_nats::Client, Gateway) {
    (unique(label), nats().await, spawn_gateway(config()).await)
}

/// A viewer of `tenant` on `gw`, subscribed to the `tickets` events (since `since`).
async fn tickets_reader(gw: &Gateway, tenant: &str, since: Option<u64>) -> Client {
    let mut c = gw.viewer(tenant).await;
    c.assert_subscribes(events("tickets", since)).await;
    c
}

/// A nats-server of the test's own, its URL, and its JetStream with the streams set up with
/// the poller's `flags`.
async fn private_streams(flags: &[&str]) -> (PrivateNats, String, async_nats::jetstream::Context) {
    let server = PrivateNats::start().await;
    let url = server.url.clone();
    let js = async_nats::jetstream::new(connect_nats(&url).await.unwrap());
    ensure_streams_with(&js, flags).await;
    (server, url, js)
}

/// Stores events `seqs` of a `tickets` subject through `js` (often a private server's), as the
/// poller relays them.
async fn store_tickets(
    js: &async_nats::jetstream::Context,
    subject: &str,
    seqs: impl IntoIterator<Item = u64>,
) {
    for seq in seqs {
        let body = json!({"type": "event", "topic": "tickets"});
        publish_stored(js, subject, seq, body).await;
    }
}

#[tokio::test]
async fn an_event_repeated_or_late_below_the_head_is_delivered_once() {
    // A relay repeated after a failover sends an event again; the gateway keeps each once.
    let (tenant, nats, gw) = setup("evdup").await;
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(events("tickets", None)).await;
    for seq in [1, 2, 2, 1, 3] {
        publish_live_event(&nats, &tenant, "tickets", seq).await;
    }
    assert_eq!(events_until(&mut c, 3).await, [1, 2, 3]);
    assert!(c.try_next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn an_event_that_arrives_before_an_earlier_one_is_held_until_it_is_read_back() {
    // Event 2 is stored a moment after event 3 went out live (a relay retry): the gateway
    // reads 2 from the stream and delivers 2 then 3.
    let (tenant, nats, gw) = setup("evreorder").await;
    let mut c = tickets_reader(&gw, &tenant, None).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    publish_live_event(&nats, &tenant, "tickets", 3).await;
    publish_event(&nats, &tenant, "tickets", 2).await;
    assert_eq!(events_until(&mut c, 3).await, [1, 2, 3]);
}

#[tokio::test]
async fn a_gap_that_cannot_be_read_back_is_announced_before_the_next_event() {
    let (tenant, nats, gw) = setup("evgap").await;
    let mut c = tickets_reader(&gw, &tenant, None).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    assert_eq!(c.next(T).await["seq"], 1);
    // Event 2 never exists anywhere.
    publish_live_event(&nats, &tenant, "tickets", 3).await;
    let reset = c.next(T).await;
    assert_eq!(
        reset,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 3, "reason": "gap"})
    );
    assert_eq!(c.next(T).await["seq"], 3);
}

/// A stored event that is not text (bytes that are not UTF-8, from a publisher other than
/// Pulse's) cannot go out as a text frame: to a live subscriber (which reads it back as
/// missing) and to a resume reading past it, it is a gap, never an empty frame.
#[tokio::test]
async fn a_stored_event_that_is_not_text_is_a_gap_live_and_on_a_resume() {
    let (tenant, nats, gw) = setup("evbytes").await;
    let live = tickets_reader(&gw, &tenant, None).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", "2");
    async_nats::jetstream::new(nats.clone())
        .publish_with_headers(
            format!("pulse.v1.{tenant}.events.tickets"),
            headers,
            bytes::Bytes::from_static(&[0xff, 0xfe, 0x00]),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    publish_event(&nats, &tenant, "tickets", 3).await;
    let resumed = tickets_reader(&gw, &tenant, Some(0)).await;
    for mut c in [live, resumed] {
        assert_eq!(c.next(T).await["seq"], 1);
        let reset = c.next(T).await;
        assert_eq!(
            reset,
            json!({"type": "events_reset", "topic": "tickets", "oldest": 3, "reason": "gap"})
        );
        assert_eq!(c.next(T).await["seq"], 3);
    }
}

/// A publishing connection to NATS (the streams in place), and a gateway whose own connection
/// runs through a proxy the test can cut.
async fn behind_a_proxy() -> (async_nats::Client, Proxy, Gateway) {
    behind_a_proxy_with(|_| {}).await
}

/// [`behind_a_proxy`], the gateway's configuration changed by `configure` too.
async fn behind_a_proxy_with(
    configure: impl FnOnce(&mut pulse_gateway::GatewayConfig),
) -> (async_nats::Client, Proxy, Gateway) {
    let nats = nats().await;
    ensure_streams(&async_nats::jetstream::new(nats.clone())).await;
    let proxy = Proxy::to(nats_url().trim_start_matches("nats://").to_owned()).await;
    let gw = spawn_gateway_with(|c| {
        c.nats.url = format!("nats://127.0.0.1:{}", proxy.port);
        configure(c);
    })
    .await;
    (nats, proxy, gw)
}

/// A viewer of `tenant` subscribed to `tickets` without `since`, of which the stream holds no
/// event: `subscribed` names no `seq`, no position to offer.
async fn reader_without_position(gw: &Gateway, tenant: &str) -> Client {
    let mut c = gw.viewer(tenant).await;
    let subscribed = c.assert_subscribes(events("tickets", None)).await;
    assert_eq!(
        subscribed.get("seq"),
        None,
        "the stream held none: {subscribed}"
    );
    c
}

/// Cuts the gateway's NATS connection and waits until the gateway says it is gone.
async fn cut_until_noticed(proxy: &Proxy, gw: &Gateway) {
    proxy.set(Link::Cut);
    let ready = || async {
        reqwest::get(format!("http://{}/readyz", gw.addr))
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    eventually("the gateway sees NATS gone", T, || async { !ready().await }).await;
}

/// A tenant `label`, a gateway [`behind_a_proxy`] and a reader of its `tickets` that got event
/// 1; then the gateway's NATS connection is cut.
async fn one_event_then_cut(label: &str) -> (String, async_nats::Client, Proxy, Gateway, Client) {
    let tenant = unique(label);
    let (nats, proxy, gw) = behind_a_proxy().await;
    let mut c = tickets_reader(&gw, &tenant, None).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    assert_eq!(c.next(T).await["seq"], 1);
    cut_until_noticed(&proxy, &gw).await;
    (tenant, nats, proxy, gw, c)
}

/// Events read back after an outage go out at once, far more than a client's queue holds of
/// live events: a client reading as they come is not closed as too slow for the gateway's own
/// burst. So do the live events held meanwhile, once the gap before them is filled.
#[tokio::test]
async fn events_read_back_after_an_outage_do_not_close_a_client_that_keeps_up() {
    let tenant = unique("evburst");
    let (nats, proxy, gw) = behind_a_proxy_with(|c| c.client_queue_events = 8).await;
    let mut c = tickets_reader(&gw, &tenant, None).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    assert_eq!(c.next(T).await["seq"], 1);
    cut_until_noticed(&proxy, &gw).await;
    for seq in 2..=40 {
        publish_event(&nats, &tenant, "tickets", seq).await;
    }
    proxy.set(Link::Open);
    assert_eq!(events_until(&mut c, 40).await, (2..=40).collect::<Vec<_>>());
    // Events held beyond a gap: 42..=70 arrive live before 41 is stored (a relay's retry).
    for seq in 42..=70 {
        publish_live_event(&nats, &tenant, "tickets", seq).await;
    }
    publish_event(&nats, &tenant, "tickets", 41).await;
    assert_eq!(
        events_until(&mut c, 70).await,
        (41..=70).collect::<Vec<_>>()
    );
    c.assert_alive().await;
}

/// A NATS server of its own without streams, a gateway whose link to it runs through a proxy,
/// and a reader of a tenant `label`'s `tickets`, subscribed while the events stream could not
/// be read: it got no `seq`.
async fn subscribed_before_the_streams(
    label: &str,
) -> (
    PrivateNats,
    async_nats::Client,
    Proxy,
    Gateway,
    String,
    Client,
) {
    let server = PrivateNats::start().await;
    let nats = connect_nats(&server.url).await.unwrap();
    let proxy = Proxy::to(server.url.trim_start_matches("nats://").to_owned()).await;
    let gw = spawn_gateway_with(|c| c.nats.url = format!("nats://127.0.0.1:{}", proxy.port)).await;
    let tenant = unique(label);
    let mut c = gw.viewer(&tenant).await;
    let subscribed = c.subscribe(events("tickets", None)).await;
    assert_eq!(subscribed["seq"], json!(null), "{subscribed}");
    (server, nats, proxy, gw, tenant, c)
}

/// A topic first subscribed while its stream could not be read (not created yet, a leader
/// being elected): the subscriber gets no `seq`, and the gateway keeps asking where the topic
/// stands, so that events missed live later (its NATS link cut) are still read back.
#[tokio::test]
async fn events_missed_live_after_a_first_subscribe_the_stream_could_not_answer_are_read_back() {
    let (_server, nats, proxy, gw, tenant, mut c) = subscribed_before_the_streams("evunread").await;

    ensure_streams(&async_nats::jetstream::new(nats.clone())).await;
    // The scenario: the gateway asks again (after 0.25, 0.5, 1 s...) once the stream answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cut_until_noticed(&proxy, &gw).await;
    for seq in 1..=3 {
        publish_event(&nats, &tenant, "tickets", seq).await;
    }
    proxy.set(Link::Open);
    pulse_test_support::gateway::wait_ready(gw.addr).await;
    publish_event(&nats, &tenant, "tickets", 4).await;
    assert_eq!(events_until(&mut c, 4).await, [1, 2, 3, 4]);
}

/// The same, with the link cut before the stream could answer: where the topic stood is not
/// known, so what the outage took cannot be read back, and the subscriber is told so.
#[tokio::test]
async fn events_missed_while_a_topic_had_no_place_in_the_stream_get_a_reset_not_silence() {
    let (_server, nats, proxy, gw, tenant, mut c) =
        subscribed_before_the_streams("evnoplace").await;

    cut_until_noticed(&proxy, &gw).await;
    ensure_streams(&async_nats::jetstream::new(nats.clone())).await;
    for seq in 1..=3 {
        publish_event(&nats, &tenant, "tickets", seq).await;
    }
    proxy.set(Link::Open);
    let reset = c.until(T, |m| m["type"] != "pong").await;
    assert_eq!(
        reset,
        json!({"type": "events_reset", "topic": "tickets", "oldest": null, "reason": "unavailable"})
    );
    publish_event(&nats, &tenant, "tickets", 4).await;
    assert_eq!(events_until(&mut c, 4).await, [4]);
}

#[tokio::test]
async fn the_first_event_of_a_topic_missed_live_is_read_back_not_passed_over() {
    // The stream holds nothing of the topic when the client subscribes; then the gateway's
    // NATS connection is cut while event 1 is relayed, so it never sees that one live.
    let tenant = unique("evfirst");
    let (nats, proxy, gw) = behind_a_proxy().await;
    let mut c = tickets_reader(&gw, &tenant, None).await;

    cut_until_noticed(&proxy, &gw).await;
    publish_event(&nats, &tenant, "tickets", 1).await;
    proxy.set(Link::Open);
    pulse_test_support::gateway::wait_ready(gw.addr).await;
    publish_event(&nats, &tenant, "tickets", 2).await;

    assert_eq!(events_until(&mut c, 2).await, [1, 2]);
}

/// The same with more events missed than the replay limit: the stream held none of the topic's
/// events at the subscribe, so every event it holds now came after it and was owed. Only the
/// newest that fit go out, after an `events_reset` (`limit`) naming the first of them; the
/// older ones are not passed over in silence as if they had gone before anyone subscribed.
#[tokio::test]
async fn more_events_missed_live_than_the_replay_limit_from_an_empty_topic_get_a_limit_reset() {
    let tenant = unique("evfirstlimit");
    let (nats, proxy, gw) = behind_a_proxy_with(|c| c.replay_max_events = 5).await;
    let mut c = reader_without_position(&gw, &tenant).await;

    cut_until_noticed(&proxy, &gw).await;
    publish_events(&nats, &tenant, "tickets", 1..=20).await;
    proxy.set(Link::Open);

    let reset = c.until(T, |m| m["type"] != "pong").await;
    assert_eq!(
        reset,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 16, "reason": "limit"})
    );
    assert_events(&mut c, 16..=20).await;
}

/// Right after the gateway's NATS link came back, a gap is given time to fill: an event the relay
/// sent while the link was down and JetStream did not acknowledge (the stream's leader went with
/// the gateway's server, say) is sent again on the relay's next pass, seconds later, and reaches
/// the gateway then.
#[tokio::test]
async fn a_gap_right_after_a_reconnect_waits_for_the_relay_to_send_the_event_again() {
    let (tenant, nats, proxy, gw, mut c) = one_event_then_cut("evresend").await;
    proxy.set(Link::Open);
    pulse_test_support::gateway::wait_ready(gw.addr).await;
    publish_event(&nats, &tenant, "tickets", 3).await;
    // The relay's next pass, 2 s on: the delay is the scenario.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_event(&nats, &tenant, "tickets", 2).await;
    assert_eq!(events_until(&mut c, 3).await, [2, 3]);
}

/// Events missed live (the gateway's NATS connection cut) are read back when it returns; a hole
/// among them that the stream will never fill (event 2 was never stored) is announced, and the
/// events after it go out then, not when the quiet topic's next event comes. Then: once the
/// relay could have sent it again (`RESEND_WAIT`, 10 s after the link came back).
#[tokio::test]
async fn a_hole_found_reading_back_after_an_outage_is_announced_and_what_follows_goes_out() {
    let (tenant, nats, proxy, _gw, mut c) = one_event_then_cut("evhole").await;
    publish_event(&nats, &tenant, "tickets", 3).await;
    publish_event(&nats, &tenant, "tickets", 4).await;
    proxy.set(Link::Open);

    let reset = c.next(Duration::from_secs(15)).await;
    assert_eq!(
        reset,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 3, "reason": "gap"})
    );
    assert_eq!(c.next(T).await["seq"], 3);
    assert_eq!(c.next(T).await["seq"], 4);
}

#[tokio::test]
async fn a_quiet_topic_whose_events_expired_goes_on_without_a_reset() {
    // Events 1..50 expired before anyone here subscribed: the stream holds none of them, and
    // the next one, 51, is simply the next event for a subscriber that came after.
    // A replay limit below the seq: reading from 0 is then "limited" too, and still no reset.
    let tenant = unique("evquiet");
    let nats = nats().await;
    let gw = spawn_gateway_with(|c| c.replay_max_events = 10).await;
    ensure_streams(&async_nats::jetstream::new(nats.clone())).await;
    let mut c = reader_without_position(&gw, &tenant).await;
    publish_event(&nats, &tenant, "tickets", 51).await;
    let next = c.next(T).await;
    assert_eq!(
        (&next["type"], &next["seq"]),
        (&json!("event"), &json!(51)),
        "{next}"
    );
    publish_event(&nats, &tenant, "tickets", 52).await;
    assert_eq!(c.next(T).await["seq"], 52);
}

#[tokio::test]
async fn since_replays_on_another_gateway_then_continues_live_while_events_keep_coming() {
    let tenant = unique("evreplay");
    let nats = nats().await;
    publish_events(&nats, &tenant, "tickets", 1..=40).await;
    // A first gateway served the topic; the client resumes on a second one that never did.
    let first = spawn_gateway(config()).await;
    let mut before = first.viewer(&tenant).await;
    let r = before.subscribe(events("tickets", None)).await;
    assert_eq!(r["seq"], 40, "subscribed names the newest seq: {r}");
    let second = spawn_gateway(config()).await;

    let publisher = {
        let nats = nats.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            publish_events(&nats, &tenant, "tickets", 41..=140).await;
        })
    };
    let mut c = second.viewer(&tenant).await;
    let r = c.assert_subscribes(events("tickets", Some(10))).await;
    assert!(r.get("seq").is_none(), "{r}");
    assert_events(&mut c, 11..=140).await;
    publisher.await.unwrap();
    assert!(c.try_next(Duration::from_millis(300)).await.is_none());
    // The first gateway's live client saw every event after its baseline, once.
    assert_events(&mut before, 41..=140).await;
}

#[tokio::test]
async fn a_resume_this_gateway_holds_in_memory_needs_no_stream_read() {
    let (tenant, nats, gw) = setup("evmemory").await;
    let mut live = tickets_reader(&gw, &tenant, None).await;
    publish_events(&nats, &tenant, "tickets", 1..=30).await;
    assert_eq!(events_until(&mut live, 30).await.len(), 30);
    let mut c = tickets_reader(&gw, &tenant, Some(25)).await;
    assert_eq!(events_until(&mut c, 30).await, [26, 27, 28, 29, 30]);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "pulse_gateway_events_replayed_total", &[]),
        5.0
    );
}

/// The recent events of all topics together stay within `PULSE_EVENTS_CACHE_BYTES`: past it
/// a topic keeps fewer, or none, and a resume that memory no longer covers is read from the
/// stream, every event once.
#[tokio::test]
async fn the_recent_events_of_all_topics_together_stay_within_their_byte_budget() {
    let (tenant, nats) = (unique("evbudget"), nats().await);
    let gw = spawn_gateway_with(|c| c.events_cache_bytes = 2_000).await;
    let mut live = gw.viewer(&tenant).await;
    for topic in ["a", "b", "c"] {
        live.assert_subscribes(events(topic, None)).await;
        publish_events(&nats, &tenant, topic, 1..=20).await;
        assert_eq!(events_until(&mut live, 20).await.len(), 20);
    }
    let kept = metric(&gw.metrics().await, "pulse_gateway_events_cache_bytes", &[]);
    // Sixty events of more than 100 bytes each: most were let go.
    assert!(kept > 0.0 && kept <= 2_000.0, "{kept} bytes kept");
    for topic in ["a", "c"] {
        let mut c = gw.viewer(&tenant).await;
        c.assert_subscribes(events(topic, Some(5))).await;
        assert_events(&mut c, 6..=20).await;
    }
    let read = metric(
        &gw.metrics().await,
        "pulse_gateway_events_read_for_replay_total",
        &[],
    );
    assert!(read >= 15.0, "{read} events read from the stream");
}

#[tokio::test]
async fn since_older_than_retention_gets_a_reset_before_the_oldest_events() {
    // A private NATS, so the small per-topic cap touches no other test.
    let (_server, url, js) = private_streams(&["--events-max-per-topic", "5"]).await;
    let tenant = unique("evexpired");
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    store_tickets(&js, &subject, 1..=12).await;
    let gw = spawn_gateway_with(|c| c.nats.url = url).await;
    let mut c = tickets_reader(&gw, &tenant, Some(2)).await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 8, "reason": "expired"})
    );
    assert_eq!(events_until(&mut c, 12).await, [8, 9, 10, 11, 12]);
}

#[tokio::test]
async fn more_missed_events_than_the_replay_limit_get_a_limit_reset_and_the_newest() {
    let tenant = unique("evlimit");
    let nats = nats().await;
    publish_events(&nats, &tenant, "tickets", 1..=30).await;
    let gw = spawn_gateway_with(|c| c.replay_max_events = 10).await;
    let mut c = tickets_reader(&gw, &tenant, Some(0)).await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 21, "reason": "limit"})
    );
    assert_events(&mut c, 21..=30).await;
    // Read back from the stream: the newest 10 only, no more than the client may be sent.
    let read = metric(
        &gw.metrics().await,
        "pulse_gateway_events_read_for_replay_total",
        &[],
    );
    assert_eq!(read, 10.0);
}

/// Events `seqs` of a new tenant's `tickets`, each of some 20 KiB, resumed from `since` on a
/// gateway whose reads hold 64 KiB of events: the client, and the gateway to keep it open.
async fn big_events_resumed(seqs: impl Iterator<Item = u64>, since: u64) -> (Client, Gateway) {
    let tenant = unique("evbytes");
    let nats = nats().await;
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    let big = "x".repeat(20 * 1024);
    for seq in seqs {
        publish_retained(
            &nats,
            &subject,
            seq,
            json!({"type": "event", "tenant_id": tenant, "topic": "tickets",
                   "event": "ticket:update", "payload": {"n": seq, "text": big}}),
        )
        .await;
    }
    let gw = spawn_gateway_with(|c| c.replay_max_bytes = 64 * 1024).await;
    (tickets_reader(&gw, &tenant, Some(since)).await, gw)
}

/// A replay's memory is bounded in bytes too: events of 20 KiB each, reads of 64 KiB. A resume
/// further behind gets a `limit` reset and the newest events the budget holds, whatever their
/// count. Only wanted events are let go: a hole among them makes the gateway read further
/// back, and those older events filling the budget is no `limit`, only the hole's gap.
#[tokio::test]
async fn a_replay_holds_the_newest_events_its_byte_budget_allows() {
    for (stored, since, before, reset, rest) in [
        ((1..=10).collect::<Vec<_>>(), 0, None, (8, "limit"), 8..=10),
        // Event 8 never exists: event 7 comes, then the gap.
        (
            (1..=10).filter(|&seq| seq != 8).collect(),
            6,
            Some(7),
            (9, "gap"),
            9..=10,
        ),
    ] {
        let (mut c, _gw) = big_events_resumed(stored.into_iter(), since).await;
        if let Some(seq) = before {
            assert_eq!(c.next(T).await["seq"], seq);
        }
        let (oldest, reason) = reset;
        assert_eq!(
            c.next(T).await,
            json!({"type": "events_reset", "topic": "tickets", "oldest": oldest, "reason": reason})
        );
        assert_events(&mut c, rest).await;
    }
}

/// A client resuming many channels at once and reading nothing has at most
/// `PULSE_REPLAY_MAX_BYTES` of replayed events waiting for it across its channels, queued or
/// taken into a write the client does not read: not a replay's worth per channel (40 topics
/// of 600 KiB here, against 1 MiB). The channels past it get a `limit` reset and the newest
/// events that fit; every channel still ends at its newest event, in order.
#[tokio::test]
async fn a_client_resuming_many_channels_unread_holds_one_replay_byte_budget() {
    const TOPICS: usize = 40;
    const BUDGET: f64 = 1024.0 * 1024.0;
    let tenant = unique("evroom");
    let nats = nats().await;
    let big = "x".repeat(60 * 1024);
    for t in 0..TOPICS {
        let subject = format!("pulse.v1.{tenant}.events.t{t}");
        for seq in 1..=10 {
            let event = json!({"type": "event", "tenant_id": tenant, "topic": format!("t{t}"),
                               "event": "e", "payload": {"n": seq, "text": big}});
            publish_retained(&nats, &subject, seq, event).await;
        }
    }
    let gw = spawn_gateway_with(|c| c.replay_max_bytes = 1024 * 1024).await;
    let mut c = gw.viewer(&tenant).await;
    for t in 0..TOPICS {
        let mut subscribe = events(&format!("t{t}"), Some(0));
        subscribe["action"] = json!("subscribe");
        c.send(subscribe).await;
    }
    // Nothing read while every catch-up runs and splices: what waits stays within the budget.
    let most = parking_lot::Mutex::new(0.0_f64);
    eventually("every catch-up done", Duration::from_secs(20), || async {
        let text = gw.metrics().await;
        let waiting = metric(&text, "pulse_gateway_replay_bytes_waiting", &[]);
        let mut most = most.lock();
        *most = most.max(waiting);
        metric(&text, "pulse_gateway_events_replayed_total", &[]) > 0.0
            && metric(&text, "pulse_gateway_event_catch_ups", &[]) == 0.0
    })
    .await;
    let most = *most.lock();
    assert!(
        most > 0.0 && most <= BUDGET + 64.0 * 1024.0,
        "{most} bytes waited"
    );
    // Then read: per topic, the events after any reset, in order, up to the newest.
    let mut got: HashMap<String, (Vec<u64>, bool)> = HashMap::new();
    while let Some(m) = c.try_next(Duration::from_secs(2)).await {
        let Some(topic) = m["topic"].as_str() else {
            continue;
        };
        let (seqs, limited) = got.entry(topic.to_owned()).or_default();
        match m["type"].as_str() {
            Some("event") => seqs.push(m["seq"].as_u64().unwrap()),
            Some("events_reset") => {
                assert_eq!(m["reason"], "limit", "{m}");
                assert!(seqs.is_empty(), "a reset before the events: {m}");
                *limited = true;
            }
            _ => {}
        }
    }
    assert_eq!(got.len(), TOPICS, "every channel answered");
    for (topic, (seqs, limited)) in &got {
        let from = seqs.first().copied().unwrap_or(11);
        assert_eq!(*seqs, (from..=10).collect::<Vec<_>>(), "{topic}");
        assert_eq!(*limited, from > 1, "{topic}: {seqs:?}");
    }
    assert!(
        got.values().any(|(_, limited)| *limited),
        "the budget held some channels back"
    );
}

/// A channel resubscribed at once from an earlier `since` (subscribe, unsubscribe, subscribe
/// in one burst) is caught up from that `since`: the first catch-up, aborted while it may be
/// running, never ends the second one with its own position. Repeated, as the overlap is a
/// matter of scheduling.
#[tokio::test]
async fn a_channel_resubscribed_at_once_from_an_earlier_since_gets_every_event_after_it() {
    let tenant = unique("evresub");
    let nats = nats().await;
    let topics: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    for topic in &topics {
        publish_events(&nats, &tenant, topic, 1..=30).await;
    }
    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&tenant).await;
    for topic in &topics {
        let channel = |action: &str, since: Option<u64>| {
            let mut m = json!({"action": action, "type": "events", "topic": topic});
            if let Some(since) = since {
                m["since"] = json!(since);
            }
            m
        };
        c.send(channel("subscribe", Some(25))).await;
        c.send(channel("unsubscribe", None)).await;
        c.send(channel("subscribe", Some(5))).await;
        // What the first subscription got before it ended is passed over.
        let mut subscribed = 0;
        while subscribed < 2 {
            let m = c.next(T).await;
            if m["type"] == "subscribed" && m["topic"] == topic.as_str() {
                subscribed += 1;
            }
        }
        let mut seen = Vec::new();
        while seen.last() != Some(&30) {
            let m = c.next(T).await;
            assert_eq!(
                (&m["type"], &m["topic"]),
                (&json!("event"), &json!(topic)),
                "{m}"
            );
            seen.push(m["seq"].as_u64().unwrap());
        }
        assert_eq!(seen, (6..=30).collect::<Vec<_>>(), "{topic}");
    }
}

#[tokio::test]
async fn a_resume_served_from_memory_keeps_to_the_replay_limit() {
    // The recent events (256 by default) reach back further than the replay limit allows.
    let tenant = unique("evmemlimit");
    let nats = nats().await;
    let gw = spawn_gateway_with(|c| c.replay_max_events = 3).await;
    let mut live = tickets_reader(&gw, &tenant, None).await;
    publish_events(&nats, &tenant, "tickets", 1..=10).await;
    assert_eq!(events_until(&mut live, 10).await.len(), 10);
    let mut c = tickets_reader(&gw, &tenant, Some(2)).await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 8, "reason": "limit"})
    );
    assert_events(&mut c, 8..=10).await;
    assert!(c.try_next(Duration::from_millis(300)).await.is_none());
}

/// Waits until `stream` retains no message of `subject`.
async fn all_expired(stream: &async_nats::jetstream::stream::Stream, subject: &str) {
    eventually("the stream to expire every event", T, || {
        let stream = stream.clone();
        let subject = subject.to_owned();
        async move { stream.direct_get_last_for_subject(subject).await.is_err() }
    })
    .await;
}

#[tokio::test]
async fn events_the_stream_no_longer_retains_are_announced_as_expired_on_resume() {
    // A private NATS whose events stream keeps an event for one second. Two gateways deliver
    // events 1 to 10 live: one remembers the newest three, the other none. Once the stream has
    // expired them all, a client resuming from 2 must hear that it missed events.
    let (_server, url, js) = private_streams(&["--events-max-age", "1s"]).await;
    let tenant = unique("evgone");
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    let remembers = spawn_gateway_with(|c| {
        c.nats.url = url.clone();
        c.events_cache = 3;
    })
    .await;
    let forgets = spawn_gateway_with(|c| {
        c.nats.url = url.clone();
        c.events_cache = 0;
    })
    .await;
    let mut live = [
        tickets_reader(&remembers, &tenant, None).await,
        tickets_reader(&forgets, &tenant, None).await,
    ];
    store_tickets(&js, &subject, 1..=10).await;
    for c in &mut live {
        assert_eq!(events_until(c, 10).await.len(), 10);
    }
    let stream = js
        .get_stream(pulse_proto::subject::EVENTS_STREAM)
        .await
        .unwrap();
    all_expired(&stream, &subject).await;

    let mut c = tickets_reader(&remembers, &tenant, Some(2)).await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "events_reset", "topic": "tickets", "oldest": 8, "reason": "expired"})
    );
    assert_events(&mut c, 8..=10).await;

    resume_after_all_expired(&forgets, &tenant, 2, (&js, &subject), 11).await;

    // A gateway started after events 12 to 20 came and expired has no head to go by: a client
    // resuming from 11 missed them, and hears so even though nothing is left to replay.
    store_tickets(&js, &subject, 12..=20).await;
    assert_eq!(
        events_until(&mut live[1], 20).await,
        (11..=20).collect::<Vec<_>>()
    );
    all_expired(&stream, &subject).await;
    let fresh = spawn_gateway_with(|c| c.nats.url = url.clone()).await;
    resume_after_all_expired(&fresh, &tenant, 11, (&js, &subject), 21).await;
}

/// A client resuming from `since` on `gw` once the stream retains none of the topic's events:
/// it hears `expired` with no `oldest`, then the live events follow (`next`, stored now).
async fn resume_after_all_expired(
    gw: &Gateway,
    tenant: &str,
    since: u64,
    (js, subject): (&async_nats::jetstream::Context, &str),
    next: u64,
) {
    let mut c = tickets_reader(gw, tenant, Some(since)).await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "events_reset", "topic": "tickets", "oldest": null, "reason": "expired"})
    );
    store_tickets(js, subject, [next]).await;
    assert_eq!(c.next(T).await["seq"], next);
}

#[tokio::test]
async fn a_connection_resuming_many_channels_holds_one_replay_limit_not_one_per_channel() {
    // Three channels resumed at once, 80 events of 60 KiB each (random text, which
    // compression cannot shrink). The first replay the writer takes is more than the sockets'
    // buffers hold, so while the client reads nothing the writer is stuck, and the replays
    // after it wait in the queue, sharing the connection's limit (100) instead of taking 80
    // each: at least one channel gets a `limit` reset and only its newest events.
    // A private NATS, so the 14 MB of events go with it.
    let (_server, url, js) = private_streams(&[]).await;
    let tenant = unique("evbudget");
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let pad: String = (0..60 * 1024)
        .map(|_| char::from(LETTERS[usize::from(rand::random::<u8>()) % LETTERS.len()]))
        .collect();
    let topics = ["one", "two", "three"];
    for topic in topics {
        let subject = format!("pulse.v1.{tenant}.events.{topic}");
        for seq in 1..=80 {
            let body = json!({"type": "event", "topic": topic, "pad": pad});
            publish_stored(&js, &subject, seq, body).await;
        }
    }
    let gw = spawn_gateway_with(|c| {
        c.nats.url = url;
        c.replay_max_events = 100;
    })
    .await;
    let mut c = gw.viewer(&tenant).await;
    for topic in topics {
        c.send(json!({"action": "subscribe", "type": "events", "topic": topic, "since": 0}))
            .await;
    }
    eventually("every catch-up done", T, || async {
        let m = gw.metrics().await;
        metric(&m, "pulse_gateway_event_catch_ups", &[]) == 0.0
            && metric(&m, "pulse_gateway_events_replayed_total", &[]) >= 100.0
    })
    .await;
    // Each channel's replay, read until it ends: at event 80, or at a reset naming none.
    let mut replays: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut ended = 0;
    while ended < topics.len() {
        let m = c.next(T).await;
        let what = match m["type"].as_str() {
            Some("event") => m["seq"].to_string(),
            Some("events_reset") => format!("reset({},{})", m["oldest"], m["reason"]),
            _ => continue, // subscribed
        };
        if what == "80" || what == r#"reset(null,"limit")"# {
            ended += 1;
        }
        let topic = m["topic"].as_str().unwrap_or_default().to_owned();
        replays.entry(topic).or_default().push(what);
    }
    let mut kept = 0;
    let mut limited = 0;
    for (topic, replay) in &replays {
        let events: Vec<u64> = replay.iter().filter_map(|w| w.parse().ok()).collect();
        let first = events.first().copied().unwrap_or(81);
        let whole: Vec<u64> = (first..=80).collect();
        assert_eq!(
            events, whole,
            "{topic}: the newest events, in order: {replay:?}"
        );
        if first > 1 {
            limited += 1;
            let oldest = if events.is_empty() {
                "null".to_owned()
            } else {
                first.to_string()
            };
            assert_eq!(replay[0], format!(r#"reset({oldest},"limit")"#), "{topic}");
        }
        kept += events.len();
    }
    assert!(limited >= 1, "no replay was limited: {replays:?}");
    // At most the batch the writer took before it was stuck, and the limit after it.
    assert!(kept <= 80 + 100, "{kept} events replayed");
}

#[tokio::test]
async fn without_jetstream_a_replay_is_an_unavailable_reset_never_a_silent_empty_one() {
    // Core NATS only: the events stream cannot be read.
    let server = PrivateNats::without_jetstream().await;
    let url = server.url.clone();
    let nats = connect_nats(&url).await.unwrap();
    let gw = spawn_gateway_with(|c| c.nats.url = url).await;
    let tenant = unique("evnojs");
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(events("tickets", Some(5))).await;
    let reset = c.next(T).await;
    assert_eq!(reset["type"], "events_reset", "{reset}");
    assert_eq!(reset["reason"], "unavailable");
    // Live events still follow, after the reset.
    publish_live_event(&nats, &tenant, "tickets", 9).await;
    assert_eq!(c.next(T).await["seq"], 9);
}

#[tokio::test]
async fn since_must_be_a_whole_number() {
    let tenant = unique("evsince");
    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&tenant).await;
    for bad in [
        json!(-1),
        json!(1.5),
        json!("3"),
        json!(9_007_199_254_740_992u64),
    ] {
        let r = c
            .subscribe(json!({"type": "events", "topic": "tickets", "since": bad}))
            .await;
        assert_eq!(r["code"], "invalid_since", "{bad}: {r}");
        // Named, so a client knows which subscription to start afresh.
        assert_eq!(r["channel"], "events", "{r}");
        assert_eq!(r["topic"], "tickets", "{r}");
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn a_client_closed_as_too_slow_resumes_with_since_and_loses_nothing() {
    let tenant = unique("ev4008");
    let nats = nats().await;
    let gw = spawn_gateway_with(small_client_buffers).await;
    let mut slow = gw.viewer(&tenant).await;
    slow.subscribe(events("firehose", None)).await;
    // It stops reading; 16 KiB events overflow its socket buffers and its queue.
    let pad = "x".repeat(16 * 1024);
    const EVENTS: u64 = 600;
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    let subject = format!("pulse.v1.{tenant}.events.firehose");
    for seq in 1..=EVENTS {
        let body = json!({"type": "event", "topic": "firehose", "pad": pad});
        publish_stored(&js, &subject, seq, body).await;
    }
    let (seen, code) = slow.events_until_closed(Duration::from_secs(20)).await;
    // Closed as a slow consumer: the close frame reaches it unless the gateway had to drop the
    // connection with the close still unsent, which the count says all the same.
    assert!(matches!(code, Some(4008) | None), "{code:?}");
    let closes = metric(
        &gw.metrics().await,
        "pulse_gateway_slow_consumer_closes_total",
        &[],
    );
    assert_eq!(closes, 1.0, "closed as a slow consumer");
    let last = seen.last().copied().unwrap_or(0);
    assert_eq!(
        seen,
        (1..=last).collect::<Vec<u64>>(),
        "in order before the close"
    );
    assert!(
        last < EVENTS,
        "the client was closed before it had everything"
    );

    let mut resumed = gw.viewer(&tenant).await;
    resumed.subscribe(events("firehose", Some(last))).await;
    assert_events(&mut resumed, last + 1..=EVENTS).await;
}

#[tokio::test]
async fn a_drained_client_resumes_on_another_gateway_with_events_published_meanwhile() {
    let tenant = unique("evdrain");
    let nats = nats().await;
    let draining = spawn_gateway(config()).await;
    let other = spawn_gateway(config()).await;
    let mut c = tickets_reader(&draining, &tenant, None).await;
    publish_events(&nats, &tenant, "tickets", 1..=5).await;
    assert_eq!(events_until(&mut c, 5).await.len(), 5);
    draining.begin_shutdown();
    assert_eq!(c.closed(Duration::from_secs(10)).await.code, 1012);
    publish_events(&nats, &tenant, "tickets", 6..=20).await;
    let mut c = tickets_reader(&other, &tenant, Some(5)).await;
    assert_events(&mut c, 6..=20).await;
}

#[tokio::test]
async fn a_client_ahead_of_this_gateway_is_not_sent_again_what_it_has() {
    // A client resumes with `since` beyond the events this gateway has delivered so far, as
    // after a drain onto a gateway whose live feed lags the one the client came from. When
    // those events arrive here, the client must not get them a second time.
    let (tenant, nats, gw) = setup("evahead").await;
    let url = gw.url(&viewer_token(&tenant, 60));
    let mut behind = connect(&url).await;
    behind.subscribe(events("tickets", None)).await;
    publish_events(&nats, &tenant, "tickets", 1..=4).await;
    assert_eq!(events_until(&mut behind, 4).await, [1, 2, 3, 4]);
    let mut ahead = connect(&url).await;
    ahead.assert_subscribes(events("tickets", Some(6))).await;
    // Nothing to replay: it has more than the stream holds.
    assert!(ahead.try_next(Duration::from_millis(300)).await.is_none());
    publish_events(&nats, &tenant, "tickets", 5..=8).await;
    assert_eq!(events_until(&mut behind, 8).await, [5, 6, 7, 8]);
    let first = ahead
        .until(T, |m| m["type"] == "event" || m["type"] == "events_reset")
        .await;
    assert_eq!(first["seq"], 7, "events 5 and 6 came again: {first}");
    assert_eq!(events_until(&mut ahead, 8).await, [8]);
}

#[tokio::test]
async fn a_client_whose_gateway_was_killed_resumes_elsewhere_and_loses_nothing() {
    let tenant = unique("evkill");
    let nats = nats().await;
    let port = free_port();
    let mut killed = spawn_gateway_process(port, &[]).await;
    let mut c = viewer_on_port(port, &tenant).await;
    c.subscribe(events("tickets", None)).await;
    publish_events(&nats, &tenant, "tickets", 1..=5).await;
    assert_eq!(events_until(&mut c, 5).await.len(), 5);
    killed.start_kill().unwrap(); // SIGKILL
    killed.wait().await.unwrap();
    assert_eq!(c.closed_or_dropped(Duration::from_secs(10)).await, None);
    publish_events(&nats, &tenant, "tickets", 6..=25).await;
    let other = spawn_gateway(config()).await;
    let mut c = tickets_reader(&other, &tenant, Some(5)).await;
    assert_events(&mut c, 6..=25).await;
}

#[tokio::test]
async fn a_catch_up_ends_when_its_client_unsubscribes_not_when_its_reads_give_up() {
    // A private NATS that can be made to hang: a read of the stream then waits out its timeout.
    let (server, url, js) = private_streams(&[]).await;
    let tenant = unique("evabort");
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    store_tickets(&js, &subject, 1..=3).await;
    // No recent events kept in memory: every resume reads the stream.
    let gw = spawn_gateway_with(|c| {
        c.nats.url = url;
        c.events_cache = 0;
    })
    .await;
    let _live = tickets_reader(&gw, &tenant, None).await;
    let catch_ups = || async { metric(&gw.metrics().await, "pulse_gateway_event_catch_ups", &[]) };

    server.pause();
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(events("tickets", Some(0))).await;
    eventually("a catch-up reading the stream", T, || async {
        catch_ups().await == 1.0
    })
    .await;
    c.send(json!({"action": "unsubscribe", "type": "events", "topic": "tickets"}))
        .await;
    assert_eq!(c.next(T).await["type"], "unsubscribed");
    // Its read would wait 2 s for the hung server; the catch-up is gone well before.
    eventually("the catch-up ended", Duration::from_secs(1), || async {
        catch_ups().await == 0.0
    })
    .await;
    server.resume();
    c.assert_alive().await;
}

/// One client resumes 30 channels at once, each `since: 0` with 40 events stored, on a
/// fan-out whose replay limit (`replay_max_events`) is 10, while nothing is taken from its
/// queue, as when its socket is full. Driven at the fan-out, where the test holds the client's
/// queue: a connection's writer cannot be held from outside for as long as its catch-ups run
/// (renewals and device checks are answered beside it).
///
/// (a) The bound on what is read for this client, from `Events::catch_up` and `ClientQueue`:
/// a catch-up waits for one of the client's `CATCH_UPS_AT_ONCE` (4) turns, then reads at most
/// the replay room left when it starts (10 minus the replayed frames waiting), or one event
/// when none is left. At most 4 start before anything is queued and read 10 each; once one of
/// them has queued 10 events and a reset, the room is full, so each catch-up after them reads
/// one event: at most 4 × 10 + 26 × 1 = 66. (One read per catch-up: nothing is published to
/// these topics meanwhile, so none reads again to close a gap.) Reading without the room, or
/// running all 30 at once, reads 30 × 10 = 300.
///
/// (b) What waits for the client is one replay limit's worth: at most 10 events in all, the
/// newest of their topic after a `limit` reset naming the first; every other topic gets a
/// `limit` reset with no `oldest`, and its next live event follows. No topic is left silent.
///
/// (c) Another client of the same tenant, on the same topics, gets its live events meanwhile.
#[tokio::test]
async fn resuming_many_channels_at_once_reads_one_replay_limit_plus_the_reads_in_flight() {
    use std::sync::Arc;

    use pulse_gateway::fanout::{EventLimits, FanOut};
    use pulse_gateway::frame::Frame;
    use pulse_gateway::metrics::Metrics;
    use pulse_gateway::queue::{ClientQueue, Newest};
    use pulse_proto::Subject;

    const TOPICS: usize = 30;
    const STORED: u64 = 40;
    const REPLAY_MAX: usize = 10;
    /// `CATCH_UPS_AT_ONCE` in the gateway's queue, which the bound counts on.
    const CATCH_UPS_AT_ONCE: usize = 4;
    const OTHER: u64 = 1;
    const RESUMING: u64 = 2;

    let nats = nats().await;
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    let tenant = unique("evmany");
    let subject = |topic: &str| format!("pulse.v1.{tenant}.events.{topic}");
    let parsed = |topic: &str| Subject::parse(&subject(topic)).expect("an event subject");
    let topics: Vec<String> = (0..TOPICS).map(|n| format!("t{n:02}")).collect();
    let event = |topic: &str| json!({"type": "event", "topic": topic});
    futures::future::join_all(topics.iter().map(|topic| {
        let (js, subject, body) = (&js, subject(topic), event(topic));
        async move {
            for seq in 1..=STORED {
                publish_stored(js, &subject, seq, body.clone()).await;
            }
        }
    }))
    .await;
    let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
    let fanout = FanOut::new(
        nats.clone(),
        metrics.clone(),
        EventLimits {
            // No recent events kept in memory: every resume reads the stream.
            cache: 0,
            cache_bytes: 0,
            replay_max: REPLAY_MAX,
            replay_max_bytes: 16 << 20,
            subjects_per_tenant: 1_000,
            subjects_per_user: 1_000,
        },
    );
    let queue_events = config().client_queue_events;
    /// Everything waiting in `queue`, as JSON.
    fn taken(queue: &ClientQueue) -> Vec<(Frame, Value)> {
        let mut frames = Vec::new();
        assert!(!queue.take(&mut frames), "the queue overflowed");
        frames
            .into_iter()
            .map(|f| {
                let v: Value = serde_json::from_str(f.text.as_str()).unwrap();
                (f, v)
            })
            .collect()
    }

    // The other client keeps every topic live here; it also follows a topic of its own.
    let other = Arc::new(ClientQueue::new(queue_events, Default::default()));
    for topic in topics.iter().chain([&"live".to_owned()]) {
        let subscribed = fanout
            .subscribe(OTHER, "other", &other, &parsed(topic), None)
            .await
            .unwrap();
        if topic != "live" {
            assert_eq!(subscribed.seq, Some(STORED), "{topic}");
        }
    }

    // The resuming client; what it is written is what passes the connection's `seq` filter.
    let resuming = Arc::new(ClientQueue::new(queue_events, Default::default()));
    let mut written = std::collections::HashMap::new();
    for topic in &topics {
        let subscribed = fanout
            .subscribe(RESUMING, "resuming", &resuming, &parsed(topic), Some(0))
            .await
            .unwrap();
        written.insert(subscribed.topic.id, Newest::of(0));
    }
    let live = subject("live");
    for seq in 1..=5 {
        publish_stored(&js, &live, seq, event("live")).await;
    }
    eventually("every catch-up done while the queue is held", T, || async {
        metrics.event_catch_ups.get() == 0
    })
    .await;
    // (a)
    let read = metrics.events_read_for_replay.get();
    let bound = CATCH_UPS_AT_ONCE * REPLAY_MAX + (TOPICS - CATCH_UPS_AT_ONCE);
    assert!(
        read <= bound as u64,
        "{read} events read from the stream for one client, more than {bound}"
    );
    // (c) The other client got its live events while this one was held, and gets the next
    // event of every topic.
    let mut others: Vec<Value> = Vec::new();
    eventually("the other client's live events", T, || {
        others.extend(taken(&other).into_iter().map(|(_, v)| v));
        std::future::ready(others.len() >= 5)
    })
    .await;
    let seqs: Vec<&Value> = others.iter().map(|v| &v["seq"]).collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5].map(|n| json!(n)).iter().collect::<Vec<_>>()
    );
    assert!(others.iter().all(|v| v["topic"] == "live"), "{others:?}");

    // (b) Taken now: what waited, then each topic's live event, STORED + 1.
    let mut frames = taken(&resuming);
    for topic in &topics {
        publish_stored(&js, &subject(topic), STORED + 1, event(topic)).await;
    }
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut ended = 0;
    eventually("every topic reached its live event", T, || {
        frames.extend(taken(&resuming));
        for (frame, m) in frames.drain(..) {
            let newest = written.get_mut(&frame.topic).expect("a topic subscribed");
            if !newest.advance(frame.seq) {
                continue;
            }
            let what = match m["type"].as_str() {
                Some("event") => m["seq"].to_string(),
                Some("events_reset") => format!("reset({},{})", m["oldest"], m["reason"]),
                _ => panic!("unexpected {m}"),
            };
            if what == (STORED + 1).to_string() {
                ended += 1;
            }
            let topic = m["topic"].as_str().unwrap_or_default().to_owned();
            seen.entry(topic).or_default().push(what);
        }
        std::future::ready(ended >= TOPICS)
    })
    .await;
    assert_eq!(seen.len(), TOPICS, "{seen:?}");
    let mut kept = 0;
    for (topic, got) in &seen {
        let (live, replay) = got.split_last().unwrap();
        assert_eq!(*live, (STORED + 1).to_string(), "{topic}: {got:?}");
        let replayed: Vec<u64> = replay.iter().filter_map(|w| w.parse().ok()).collect();
        let expected = match replayed.first() {
            // Not one event fitted: a reset says so before the live ones.
            None => vec![r#"reset(null,"limit")"#.to_owned()],
            // The newest, in order, after a reset naming the first.
            Some(&first) => std::iter::once(format!(r#"reset({first},"limit")"#))
                .chain((first..=STORED).map(|seq| seq.to_string()))
                .collect(),
        };
        assert_eq!(replay, expected, "{topic}");
        kept += replayed.len();
    }
    assert!(
        (1..=REPLAY_MAX).contains(&kept),
        "{kept} events replayed: {seen:?}"
    );
}

/// A relay retry stores an event after later ones of its topic, and past the duplicate window
/// stores one twice: the history read from any `since` still holds every event after it once,
/// in order (the newest `max` when there are more).
#[tokio::test]
async fn history_read_from_any_since_holds_every_event_once_whatever_their_stream_order() {
    use prometheus_client::metrics::counter::Counter;
    use pulse_gateway::history::History;

    let nats = nats().await;
    let js = async_nats::jetstream::new(nats);
    ensure_streams(&js).await;
    let subject = format!("pulse.v1.{}.events.t", unique("historder"));
    let stream_order = (1..=10)
        .chain(12..=20)
        .chain([11])
        .chain(21..=25)
        .chain([5])
        .chain(26..=30);
    for seq in stream_order {
        publish_stored(&js, &subject, seq, json!({"type": "event", "topic": "t"})).await;
    }
    let history = History::new(js.clone(), Counter::default());
    let parsed = pulse_proto::Subject::parse(&subject).unwrap();
    for max in [3, 100] {
        for since in 0..=30 {
            let stored = history
                .read_after(&parsed, 1, since, max, 16 << 20)
                .await
                .unwrap();
            let got: Vec<u64> = stored.frames.iter().map(|f| f.seq).collect();
            let from = (since + 1).max(31_u64.saturating_sub(max as u64));
            let want: Vec<u64> = (from..=30).collect();
            assert_eq!(got, want, "since {since}, max {max}");
            assert_eq!(
                stored.limited,
                30 - since > max as u64,
                "since {since}, max {max}"
            );
        }
    }

    // As far out of order as the relay can store an event: after 199 later ones of its topic.
    let far = format!("pulse.v1.{}.events.t", unique("histfar"));
    let (late, last) = (300, 700);
    let stream_order = (1..late)
        .chain(late + 1..late + 200)
        .chain([late])
        .chain(late + 200..=last);
    for seq in stream_order {
        publish_stored(&js, &far, seq, json!({"type": "event", "topic": "t"})).await;
    }
    let parsed = pulse_proto::Subject::parse(&far).unwrap();
    for since in (late - 50..late + 250).step_by(7) {
        let stored = history
            .read_after(&parsed, 1, since, 1_000, 16 << 20)
            .await
            .unwrap();
        let got: Vec<u64> = stored.frames.iter().map(|f| f.seq).collect();
        assert_eq!(
            got,
            (since + 1..=last).collect::<Vec<u64>>(),
            "since {since}"
        );
    }
}

/// A hole that stays (an event passed over as too big, or deleted) among a topic's newest
/// events is read around: the reads it costs are bounded by how far the relay can store events
/// out of order, not by the topic's whole history.
#[tokio::test]
async fn a_hole_in_a_long_history_is_read_around_not_from_the_start() {
    use prometheus_client::metrics::counter::Counter;
    use pulse_gateway::history::History;

    const STORED: u64 = 2_000;
    const HOLE: u64 = 1_990;
    let nats = nats().await;
    let js = async_nats::jetstream::new(nats);
    ensure_streams(&js).await;
    let subject = format!("pulse.v1.{}.events.t", unique("histhole"));
    for seq in (1..=STORED).filter(|s| *s != HOLE) {
        publish_stored(&js, &subject, seq, json!({"type": "event", "topic": "t"})).await;
    }
    let gets = Counter::default();
    let history = History::new(js, gets.clone());
    let parsed = pulse_proto::Subject::parse(&subject).unwrap();
    let stored = history
        .read_after(&parsed, 1, HOLE - 10, 100, 16 << 20)
        .await
        .unwrap();
    let got: Vec<u64> = stored.frames.iter().map(|f| f.seq).collect();
    let want: Vec<u64> = (HOLE - 9..=STORED).filter(|s| *s != HOLE).collect();
    assert_eq!(got, want);
    let gets = gets.get();
    assert!(gets < STORED / 2, "{gets} reads for 20 events");
}

#[tokio::test]
async fn an_event_sent_live_but_not_stored_yet_is_delivered_where_the_stream_held_none() {
    // The stream held nothing of the topic when the client subscribed. Event 51 then goes out
    // live while its store is lost (a leader change mid-relay; the relay stores it again
    // later), and 52 is stored: 51 came after the read, so it is owed, not taken for one
    // that expired before anyone here subscribed (and 52 then for the one after the head).
    let (tenant, nats, gw) = setup("evunstored").await;
    ensure_streams(&async_nats::jetstream::new(nats.clone())).await;
    let mut c = tickets_reader(&gw, &tenant, None).await;
    // The stream refuses to store it (an expectation it does not meet); subscribers get it.
    let (mut headers, payload) = sequenced(51, json!({"type": "event", "topic": "tickets"}));
    headers.insert("Nats-Expected-Last-Subject-Sequence", "999999");
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    nats.publish_with_headers(subject, headers, payload)
        .await
        .unwrap();
    publish_event(&nats, &tenant, "tickets", 52).await;
    assert_eq!(events_until(&mut c, 52).await, [51, 52]);
}
