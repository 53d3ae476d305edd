//! The event outbox: events written in PostgreSQL reach NATS once each, in `seq` order per
//! topic, across relay crashes and NATS outages; alert changes are events; old relayed events
//! are pruned.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pulse_poller::relay::Relay;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::helpers::*;

/// A relay on `db` publishing through `nats`, outside any poller.
fn relay(db: &ScratchDb, nats: &async_nats::Client, max_age: Duration) -> Relay {
    let metrics = pulse_poller::metrics::Metrics::register(
        &mut prometheus_client::registry::Registry::default(),
    );
    Relay::new(
        db.pool.clone(),
        async_nats::jetstream::new(nats.clone()),
        metrics.clone(),
        pulse_poller::streams::WriteFailures::new(metrics),
        max_age,
    )
}

/// Writes event `event` on `tenant`'s `topic` through `pulse_emit_event`; returns its seq.
/// `payload` goes as JSON text that PostgreSQL reads as `jsonb`: a JSON value written out, or
/// text as it stands (for a payload a decoded JSON value cannot hold).
async fn emit(
    db: &ScratchDb,
    tenant: &str,
    topic: &str,
    event: &str,
    payload: impl Display,
) -> i64 {
    emit_with_key(db, tenant, topic, event, payload, None).await
}

/// [`emit`] with an idempotency key: while an event written with the same `key` is kept, its
/// seq is returned and nothing is written.
async fn emit_with_key(
    db: &ScratchDb,
    tenant: &str,
    topic: &str,
    event: &str,
    payload: impl Display,
    key: Option<&str>,
) -> i64 {
    sqlx::query_scalar("SELECT pulse_emit_event($1, $2, $3, $4::jsonb, $5)")
        .bind(tenant)
        .bind(topic)
        .bind(event)
        .bind(payload.to_string())
        .bind(key)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// A tenant of `devices` devices, a subscription to its `topic`'s events, and an active poller
/// relaying them.
async fn relaying(
    label: &str,
    devices: usize,
    topic: &str,
) -> (ScratchDb, String, async_nats::Subscriber, PollerHandle) {
    let (db, tenant) = db_with_tenant(label, devices).await;
    let client = pulse_test_support::nats::shared().await;
    let sub = subscribed(&client, format!("pulse.v1.{tenant}.events.{topic}")).await;
    let poller = spawn_active(config(&db)).await;
    (db, tenant, sub, poller)
}

/// `(topic, seq, payload)` of a tenant's events, by topic and seq.
async fn outbox(db: &ScratchDb, tenant: &str) -> Vec<(String, i64, Value)> {
    sqlx::query_as(
        "SELECT topic::text, seq, payload FROM events WHERE tenant_id = $1 ORDER BY topic, seq",
    )
    .bind(tenant)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Checks that `messages` (all of one topic, in the order received or stored) are exactly the
/// outbox's events `1..=rows.len()` of that topic, with their headers.
fn assert_topic(
    tenant: &str,
    topic: &str,
    messages: &[(u64, String, Value)],
    rows: &[(String, i64, Value)],
) {
    let want: Vec<u64> = (1..=rows.len() as u64).collect();
    let got: Vec<u64> = messages.iter().map(|m| m.0).collect();
    assert_eq!(
        got, want,
        "{tenant}/{topic}: seqs out of order, missing or repeated"
    );
    for ((seq, id, body), (_, row_seq, payload)) in messages.iter().zip(rows) {
        assert_eq!(*seq as i64, *row_seq);
        assert_eq!(*id, format!("{tenant}.{topic}.{seq}"), "Nats-Msg-Id");
        assert_eq!(body["type"], "event");
        assert_eq!(body["tenant_id"], tenant);
        assert_eq!(body["topic"], topic);
        assert_eq!(body["seq"], *seq, "Pulse-Seq and the body's seq differ");
        assert_eq!(body["payload"], *payload, "{tenant}/{topic} seq {seq}");
    }
}

/// What the events stream holds for one topic, as `(Pulse-Seq, Nats-Msg-Id, body)`.
/// Asserts the events stream holds `tenant`'s `topic` as the outbox does (see
/// [`assert_topic`]); returns how many events that is.
async fn stream_matches_outbox(
    js: &async_nats::jetstream::Context,
    db: &ScratchDb,
    tenant: &str,
    topic: &str,
) -> usize {
    let rows: Vec<_> = outbox(db, tenant)
        .await
        .into_iter()
        .filter(|r| r.0 == topic)
        .collect();
    assert_topic(tenant, topic, &stored(js, tenant, topic).await, &rows);
    rows.len()
}

async fn stored(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    topic: &str,
) -> Vec<(u64, String, Value)> {
    stored_events(js, &format!("pulse.v1.{tenant}.events.{topic}"))
        .await
        .iter()
        .map(|m| event_parts(Some(&m.headers), &m.payload))
        .collect()
}

#[tokio::test]
async fn events_from_concurrent_sql_writers_reach_nats_in_seq_order_once_each() {
    let (db, a) = db_with_tenant("ev-a", 0).await;
    let b = db.tenant("ev-b", 0).await;
    let client = pulse_test_support::nats::shared().await;
    let mut sub_a = subscribed(&client, format!("pulse.v1.{a}.events.*")).await;
    let mut sub_b = subscribed(&client, format!("pulse.v1.{b}.events.*")).await;
    let poller = spawn_active(config(&db)).await;

    // Four writers on connections of their own, each in transactions of one to three events
    // over three topics of two tenants; every fifth transaction rolls back. Topics are always
    // taken in the same order within a transaction, as any multi-topic writer must.
    let writers = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .unwrap();
    let tasks = (0..4).map(|w| {
        let (pool, a, b) = (writers.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            for j in 0..15 {
                let topics: &[(&str, &str)] = match j % 3 {
                    0 => &[(&a, "orders")],
                    1 => &[(&a, "orders"), (&a, "ship")],
                    _ => &[(&b, "orders"), (&a, "orders"), (&a, "ship")],
                };
                let mut tx = pool.begin().await.unwrap();
                for (tenant, topic) in topics {
                    sqlx::query("SELECT pulse_emit_event($1, $2, 'test:write', $3)")
                        .bind(tenant)
                        .bind(topic)
                        .bind(json!({"w": w, "j": j}))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                if j % 5 == 4 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    writers.close().await;

    // 12 of 15 transactions per writer committed: 12 on a/orders, 8 on a/ship, 4 on b/orders.
    let rows_a = outbox(&db, &a).await;
    let rows_b = outbox(&db, &b).await;
    let by_topic = |rows: &[(String, i64, Value)], topic: &str| -> Vec<(String, i64, Value)> {
        rows.iter().filter(|r| r.0 == topic).cloned().collect()
    };
    let (a_orders, a_ship, b_orders) = (
        by_topic(&rows_a, "orders"),
        by_topic(&rows_a, "ship"),
        by_topic(&rows_b, "orders"),
    );
    assert_eq!(
        (a_orders.len(), a_ship.len(), b_orders.len()),
        (4 * 12, 4 * 8, 4 * 4)
    );
    // Rolled-back events are nowhere.
    for (_, _, payload) in rows_a.iter().chain(&rows_b) {
        assert_ne!(payload["j"].as_i64().unwrap() % 5, 4, "{payload}");
    }

    // Live subscribers get every event once, in seq order per topic.
    let mut got: BTreeMap<String, Vec<(u64, String, Value)>> = BTreeMap::new();
    let want = rows_a.len() + rows_b.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut subs = futures::stream::select(&mut sub_a, &mut sub_b);
    while got.values().map(Vec::len).sum::<usize>() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, subs.next())
            .await
            .unwrap_or_else(|_| panic!("only {got:?} of {want} events arrived"))
            .unwrap();
        got.entry(m.subject.to_string())
            .or_default()
            .push(event_parts(m.headers.as_ref(), &m.payload));
    }
    assert_eq!(got.len(), 3, "{:?}", got.keys());
    assert_topic(
        &a,
        "orders",
        &got[&format!("pulse.v1.{a}.events.orders")],
        &a_orders,
    );
    assert_topic(
        &a,
        "ship",
        &got[&format!("pulse.v1.{a}.events.ship")],
        &a_ship,
    );
    assert_topic(
        &b,
        "orders",
        &got[&format!("pulse.v1.{b}.events.orders")],
        &b_orders,
    );
    // Nothing more trails behind.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), subs.next())
            .await
            .is_err(),
        "an event arrived twice"
    );

    // The outbox is marked, and the stream holds each event once.
    wait_all_relayed(&db, "every event marked relayed", Duration::from_secs(5)).await;
    let js = async_nats::jetstream::new(client.clone());
    assert_topic(&a, "orders", &stored(&js, &a, "orders").await, &a_orders);
    assert_topic(&a, "ship", &stored(&js, &a, "ship").await, &a_ship);
    assert_topic(&b, "orders", &stored(&js, &b, "orders").await, &b_orders);
    poller.stop().await;
}

/// A row written straight into the outbox (an outside writer, `COPY`) wakes the relay as one
/// written by `pulse_emit_event` does, well before the relay's next look a second later.
#[tokio::test]
async fn an_event_inserted_directly_is_relayed_at_once() {
    let (db, tenant, mut sub, poller) = relaying("ev-direct", 0, "orders").await;
    // Four, 1.2 s apart: each falls 0.2 s further into the relay's one-second round, so by
    // its round alone at least one would wait 600 ms or more.
    for seq in 1..=4 {
        // The relay has been idle a while: only a notification wakes it before its next look.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let started = Instant::now();
        exec(
            &db,
            "INSERT INTO events (tenant_id, topic, event) VALUES ($1, 'orders', 'x')",
            &tenant,
        )
        .await;
        let message = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("relayed")
            .unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(event["seq"], seq);
        assert_took_less_than(Duration::from_millis(500), started, "INSERT -> NATS");
    }
    poller.stop().await;
}

#[tokio::test]
async fn a_relay_that_dies_before_marking_sends_again_and_the_stream_keeps_one_copy() {
    let (db, tenant) = db_with_tenant("ev-crash", 0).await;
    let (nats, js) = shared_streams().await;
    for i in 1..=3 {
        emit(&db, &tenant, "orders", "order:placed", json!({"n": i})).await;
    }
    for i in 1..=2 {
        emit(&db, &tenant, "ship", "ship:sent", json!({"n": i})).await;
    }
    let relay = relay(&db, &nats, Duration::from_secs(86_400));

    assert_eq!(relay.relay_once().await.unwrap().read, 5);
    assert_eq!(unrelayed(&db).await, 0);
    // The process died after NATS stored the events and before the outbox said so.
    sqlx::query("UPDATE events SET relayed_at = NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    // The next relay (this one restarted, or the poller that took over) sends them again…
    assert_eq!(relay.relay_once().await.unwrap().read, 5);
    assert_eq!(unrelayed(&db).await, 0);
    assert_eq!(
        relay.relay_once().await.unwrap().read,
        0,
        "nothing is left to send"
    );

    // …and the stream still holds each event once, in order.
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "orders").await, 3);
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "ship").await, 2);

    // A partial crash: only the tail of a topic was unmarked. It goes again, deduplicated,
    // and a new event follows it in order.
    sqlx::query("UPDATE events SET relayed_at = NULL WHERE topic = 'orders' AND seq >= 2")
        .execute(&db.pool)
        .await
        .unwrap();
    emit(&db, &tenant, "orders", "order:placed", json!({"n": 4})).await;
    assert_eq!(relay.relay_once().await.unwrap().read, 3);
    assert_eq!(unrelayed(&db).await, 0);
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "orders").await, 4);
}

#[tokio::test]
async fn one_topics_backlog_does_not_hold_back_the_other_tenants() {
    let db = ScratchDb::migrated("poller").await;
    // `a` sorts before `b`: its backlog would be read first.
    let a = db.tenant("ev-fair-a", 0).await;
    let b = db.tenant("ev-fair-b", 0).await;
    let (nats, js) = shared_streams().await;
    let backlog = pulse_poller::relay::BATCH + 100;
    sqlx::query(
        "SELECT pulse_emit_event($1, 'bulk', 'bulk:item', jsonb_build_object('n', g)) \
           FROM generate_series(1, $2) g",
    )
    .bind(&a)
    .bind(backlog)
    .execute(&db.pool)
    .await
    .unwrap();
    emit(&db, &b, "tickets", "ticket:open", json!({"id": 1})).await;
    let relay = relay(&db, &nats, Duration::from_secs(86_400));

    // The first pass takes some of the backlog and `b`'s event: `b` waits for no backlog.
    let first = relay.relay_once().await.unwrap();
    assert_eq!(first.read as i64, pulse_poller::relay::PER_TOPIC + 1);
    assert!(
        first.more,
        "a capped topic is followed at once by the next pass"
    );
    assert_eq!(stream_matches_outbox(&js, &db, &b, "tickets").await, 1);
    // The passes that follow take the rest of the backlog, in order, and then stop.
    let mut passes = 1;
    while relay.relay_once().await.unwrap().more {
        passes += 1;
        assert!(passes < 20, "the backlog never ends");
    }
    assert_eq!(unrelayed(&db).await, 0);
    assert_eq!(
        stream_matches_outbox(&js, &db, &a, "bulk").await,
        backlog as usize
    );
}

/// How many events of each of `tenant`'s topics are marked relayed.
async fn relayed_per_topic(db: &ScratchDb, tenant: &str) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT topic::text, count(*) FILTER (WHERE relayed_at IS NOT NULL) FROM events \
          WHERE tenant_id = $1 GROUP BY topic",
    )
    .bind(tenant)
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The shared NATS, and its JetStream with the Pulse streams in place.
async fn shared_streams() -> (async_nats::Client, async_nats::jetstream::Context) {
    let nats = pulse_test_support::nats::shared().await;
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    (nats, js)
}

/// Writes `per_topic` events on each of `topics` topics of `tenant` (`t0001`, `t0002`, …).
async fn backlog(db: &ScratchDb, tenant: &str, topics: i64, per_topic: i64) {
    sqlx::query(
        "SELECT pulse_emit_event($1, 't' || lpad(g::text, 4, '0'), 'bulk:item', to_jsonb(k)) \
           FROM generate_series(1, $3) k, generate_series(1, $2) g",
    )
    .bind(tenant)
    .bind(topics)
    .bind(per_topic)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// More topics backed up than a pass takes at [`PER_TOPIC`] each: each pass still takes
/// some of every one.
#[tokio::test]
async fn each_pass_takes_some_of_every_backed_up_topic() {
    let (db, tenant) = db_with_tenant("ev-share", 0).await;
    let (nats, js) = shared_streams().await;
    backlog(&db, &tenant, 7, pulse_poller::relay::PER_TOPIC + 50).await;
    // Last in (tenant, topic) order, with one event.
    emit(&db, &tenant, "zz", "ticket:open", json!({"id": 1})).await;
    let relay = relay(&db, &nats, Duration::from_secs(86_400));

    let first = relay.relay_once().await.unwrap();
    assert!(first.more);
    let relayed = relayed_per_topic(&db, &tenant).await;
    assert_eq!(relayed.len(), 8);
    assert!(
        relayed.values().all(|n| *n > 0),
        "a topic waits for the others: {relayed:?}"
    );
    assert!(first.read as i64 <= pulse_poller::relay::BATCH);
    while relay.relay_once().await.unwrap().more {}
    assert_eq!(unrelayed(&db).await, 0);
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "t0007").await, 250);
}

/// More topics backed up than a pass takes events: the next pass goes on with the topics
/// this one did not reach, not with the first ones again.
#[tokio::test]
async fn a_pass_goes_on_with_the_topics_the_previous_one_did_not_reach() {
    let (db, tenant) = db_with_tenant("ev-turn", 0).await;
    let (nats, _) = shared_streams().await;
    let topics = pulse_poller::relay::BATCH + 1;
    backlog(&db, &tenant, topics, 2).await;
    let relay = relay(&db, &nats, Duration::from_secs(86_400));

    let first = relay.relay_once().await.unwrap();
    assert_eq!(first.read as i64, pulse_poller::relay::BATCH);
    let last = format!("t{topics:04}");
    assert_eq!(relayed_per_topic(&db, &tenant).await[&last], 0);
    relay.relay_once().await.unwrap();
    assert_eq!(
        relayed_per_topic(&db, &tenant).await[&last],
        1,
        "the topic no pass reached waits on"
    );
    while relay.relay_once().await.unwrap().more {}
    assert_eq!(unrelayed(&db).await, 0);
}

#[tokio::test]
async fn events_written_while_nats_is_down_go_out_once_it_is_back() {
    let OnPrivateNats {
        nats: mut server,
        db,
        tenant,
        poller,
    } = on_private_nats("ev-down", 0).await;
    emit(&db, &tenant, "orders", "order:placed", json!({"n": 1})).await;
    wait_all_relayed(&db, "the first event relayed", Duration::from_secs(5)).await;

    server.stop().await;
    poller.wait_nats_gone().await;
    for i in 2..=20 {
        emit(&db, &tenant, "orders", "order:placed", json!({"n": i})).await;
        if i % 4 == 0 {
            emit(&db, &tenant, "ship", "ship:sent", json!({"n": i})).await;
        }
    }
    // Nothing can have reached NATS, so nothing may be marked.
    assert_eq!(unrelayed(&db).await, 19 + 5);

    server.start_again().await;
    wait_all_relayed(
        &db,
        "the outage's events relayed after NATS is back",
        Duration::from_secs(15),
    )
    .await;
    let nats = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "orders").await, 20);
    assert_eq!(stream_matches_outbox(&js, &db, &tenant, "ship").await, 5);
    poller.stop().await;
}

#[tokio::test]
async fn alert_status_changes_are_activity_events_in_the_same_transaction() {
    let (db, tenant, mut sub, poller) = relaying("ev-activity", 1, "activity").await;

    // A rolled-back alert emits nothing and uses no seq.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
         VALUES ($1, 'dev-1', 'site-1', 'x', 1, 'never')",
    )
    .bind(&tenant)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let id = db.open_alert(&tenant, "dev-1", "too hot").await;
    // A change that is not a status change is no event.
    sqlx::query("UPDATE alerts SET summary = 'still too hot' WHERE alert_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE alerts SET status = 'ACKNOWLEDGED' WHERE alert_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    db.close_alert(id).await;

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {got:?} arrived"))
            .unwrap();
        got.push(event_parts(m.headers.as_ref(), &m.payload));
    }
    let names: Vec<(u64, &str)> = got
        .iter()
        .map(|(seq, _, v)| (*seq, v["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            (1, "alert:opened"),
            (2, "alert:acknowledged"),
            (3, "alert:closed")
        ]
    );
    for (seq, msg_id, v) in &got {
        assert_eq!(*msg_id, format!("{tenant}.activity.{seq}"));
        assert_eq!(v["tenant_id"], tenant.as_str());
        assert_eq!(v["topic"], "activity");
        assert_eq!(v["payload"]["alert_id"], id);
        assert_eq!(v["payload"]["device_id"], "dev-1");
        assert_eq!(v["payload"]["severity"], 4);
    }
    assert_eq!(got[0].2["payload"]["status"], "OPEN");
    assert_eq!(got[0].2["payload"]["summary"], "too hot");
    assert_eq!(got[1].2["payload"]["status"], "ACKNOWLEDGED");
    assert_eq!(got[1].2["payload"]["summary"], "still too hot");
    assert_eq!(got[2].2["payload"]["status"], "CLOSED");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err(),
        "more activity than the three status changes"
    );
    poller.stop().await;
}

#[tokio::test]
async fn pruning_deletes_old_relayed_events_and_never_unrelayed_ones() {
    let (db, tenant) = db_with_tenant("ev-prune", 0).await;
    let nats = pulse_test_support::nats::shared().await;
    for n in 1..=5 {
        let key = format!("key-{n}");
        let seq = emit_with_key(&db, &tenant, "t", "e", json!({"n": n}), Some(&key)).await;
        assert_eq!(seq, n);
    }
    // 1, 2: old and relayed (to go). 3: relayed but recent. 4: old but never relayed.
    // 5: recent, never relayed.
    for sql in [
        "UPDATE events SET relayed_at = now() WHERE tenant_id = $1 AND seq <= 3",
        "UPDATE events SET created_at = now() - interval '2 hours' \
          WHERE tenant_id = $1 AND seq IN (1, 2, 4)",
    ] {
        exec(&db, sql, &tenant).await;
    }

    let relay = relay(&db, &nats, Duration::from_secs(3600));
    let prune = || async { relay.prune(Duration::MAX).await.unwrap().deleted };
    assert_eq!(prune().await, 2);
    let seqs = |rows: Vec<(String, i64, Value)>| rows.into_iter().map(|r| r.1).collect::<Vec<_>>();
    assert_eq!(seqs(outbox(&db, &tenant).await), [3, 4, 5]);
    assert_eq!(prune().await, 0, "pruning twice deletes nothing more");

    // The topic's counter survives its pruned events: seqs never restart. A pruned event's
    // idempotency key is forgotten with it; a kept one still answers with its seq.
    let again = emit_with_key(&db, &tenant, "t", "e", Value::Null, Some("key-1")).await;
    assert_eq!(again, 6);
    let kept = emit_with_key(&db, &tenant, "t", "e", Value::Null, Some("key-4")).await;
    assert_eq!(kept, 4);
    assert_eq!(seqs(outbox(&db, &tenant).await), [3, 4, 5, 6]);

    // Once relayed, the old unrelayed event goes too.
    let sql = "UPDATE events SET relayed_at = now() WHERE tenant_id = $1 AND seq = 4";
    exec(&db, sql, &tenant).await;
    assert_eq!(prune().await, 1);
    assert_eq!(seqs(outbox(&db, &tenant).await), [3, 5, 6]);
}

/// A long prune (the retention lowered over a large outbox) goes a round at a time, each within
/// its budget, so that the relay gets its turn in between.
#[tokio::test]
async fn pruning_goes_a_round_at_a_time_within_its_budget() {
    let (db, tenant) = db_with_tenant("ev-prune-rounds", 0).await;
    let nats = pulse_test_support::nats::shared().await;
    exec(
        &db,
        "SELECT pulse_emit_event($1, 't' || g % 100, 'e', 'null'::jsonb) FROM generate_series(1, 25000) g",
        &tenant,
    )
    .await;
    exec(
        &db,
        "UPDATE events SET relayed_at = now(), created_at = now() - interval '2 hours' \
          WHERE tenant_id = $1",
        &tenant,
    )
    .await;
    let relay = relay(&db, &nats, Duration::from_secs(3600));
    // A budget spent at once: one batch of 10,000 per round, and word that more is left.
    let round = || async { relay.prune(Duration::ZERO).await.unwrap() };
    let rounds = [round().await, round().await, round().await];
    let deleted: Vec<(u64, bool)> = rounds.iter().map(|p| (p.deleted, p.more)).collect();
    assert_eq!(deleted, [(10_000, true), (10_000, true), (5_000, false)]);
    assert!(outbox(&db, &tenant).await.is_empty());
}

/// PostgreSQL's `jsonb` holds payloads a decoded JSON value cannot (a number past f64, nesting
/// deeper than 128, more digits than a double keeps), written by any caller of
/// `pulse_emit_event`. They are relayed as they were stored, every digit, and do not hold back
/// the events after them, of any tenant.
#[tokio::test]
async fn payloads_only_postgresql_can_hold_are_relayed_as_stored_and_stop_nothing() {
    let (db, a) = db_with_tenant("ev-odd", 0).await;
    let b = db.tenant("ev-next", 0).await;
    let (nats, js) = shared_streams().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let exact = r#"{"id":123456789012345678901234,"share":0.12345678901234567890}"#;
    for payload in [r#"{"x": 1e400}"#, deep.as_str(), exact] {
        emit(&db, &a, "odd", "odd:payload", payload).await;
    }
    emit(&db, &b, "orders", "order:placed", json!({"n": 1})).await;
    let relay = relay(&db, &nats, Duration::from_secs(86_400));
    assert_eq!(relay.relay_once().await.unwrap().read, 4);
    assert_eq!(unrelayed(&db).await, 0);
    assert_eq!(stream_matches_outbox(&js, &db, &b, "orders").await, 1);
    let odd = stored_events(&js, &format!("pulse.v1.{a}.events.odd")).await;
    let texts: Vec<String> = odd
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(texts.len(), 3);
    // 1e400 as PostgreSQL writes it out: every digit.
    assert!(
        texts[0].contains(&format!("1{}", "0".repeat(400))),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains(&deep), "the nested payload as stored");
    assert!(texts[2].contains(exact), "{}", texts[2]);
}

/// An event too big for the NATS server's `max_payload` (written by a direct caller of
/// `pulse_emit_event`; the HTTP API refuses one) is passed over, not sent on every pass: the
/// events after it go out and are marked relayed, and subscribers learn of the hole as a gap.
#[tokio::test]
async fn an_event_too_big_for_nats_does_not_hold_back_its_topic() {
    // A server that takes messages of at most 16 KiB; the outbox holds payloads up to 64 KiB.
    let server = PrivateNats::configured(
        |store| format!("max_payload: 16384\njetstream {{ store_dir: {store:?} }}\n"),
        &[],
    )
    .await;
    let nats = pulse_test_support::nats::connect(&server.url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    ensure_streams(&js).await;
    let (db, tenant) = db_with_tenant("ev-big", 0).await;
    emit(&db, &tenant, "big", "big:one", json!("x".repeat(20_000))).await;
    emit(&db, &tenant, "big", "big:next", json!({"n": 2})).await;
    let relay = relay(&db, &nats, Duration::from_secs(86_400));
    assert_eq!(relay.relay_once().await.unwrap().read, 2);
    assert_eq!(unrelayed(&db).await, 0, "nothing is left to send again");
    let held = stored(&js, &tenant, "big").await;
    let seqs: Vec<u64> = held.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(seqs, [2], "the event after the big one went out");
    assert_eq!(relay.relay_once().await.unwrap().read, 0);
}
