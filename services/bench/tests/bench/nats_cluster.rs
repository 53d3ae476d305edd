//! A three-node NATS cluster with JetStream R3 (private nats-server processes), one node
//! SIGKILLed while events flow from the PostgreSQL outbox through the poller and two gateways
//! to `pulse-bench` clients. The node killed holds the poller's connection, one gateway's
//! connection and the leaders of both streams, so every part fails over at once.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use pulse_bench::client::{self, Target, Ws};
use pulse_bench::config::Protocol;
use pulse_proto::subject::{EVENTS_STREAM, STATE_STREAM};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use pulse_test_support::ScratchDb;
use pulse_test_support::eventually_some as until;
use pulse_test_support::gateway::Gateway;
use pulse_test_support::jwt::SECRET;
use pulse_test_support::nats_cluster::{
    Cluster, replicas_current, stream_info, stream_leader, until_stream,
};

use crate::helpers::{
    assert_clean_connections, bench, bench_config, flags, spawn_gateway_on, spawn_poller_with,
};

/// The `seq` of every event `PULSE_EVENTS` holds for `subject`, in stream order, as its leader
/// has them (a replica can be behind).
async fn stored_seqs(js: &jetstream::Context, subject: &str) -> Vec<u64> {
    use jetstream::stream::LastRawMessageErrorKind;
    let stream = js.get_stream(EVENTS_STREAM).await.unwrap();
    let mut seqs = Vec::new();
    let mut from = 1;
    loop {
        let next = stream.get_first_raw_message_by_subject(subject, from);
        match tokio::time::timeout(Duration::from_secs(2), next).await {
            Ok(Ok(m)) => {
                from = m.sequence + 1;
                let seq = m.headers.get(pulse_proto::headers::SEQ).unwrap();
                seqs.push(seq.as_str().parse().unwrap());
            }
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return seqs,
            Ok(Err(e)) => panic!("cannot read {subject}: {e}"),
            Err(_) => panic!("reading {subject} timed out"),
        }
    }
}

/// A WebSocket client holding `tenant`'s alerts on `gateway`, with the `seq` of the newest
/// snapshot it received.
struct Watcher {
    ws: Ws,
    seq: u64,
}

impl Watcher {
    async fn connect(gateway: &Gateway, tenant: &str) -> Watcher {
        let target = Target::parse(&gateway.ws_url()).unwrap();
        let token = pulse_bench::token::mint(SECRET, tenant, 600).unwrap();
        let mut ws = client::connect(&target, &token, 0, false, 8192, Protocol::Pulse)
            .await
            .unwrap();
        let mut early = Vec::new();
        client::subscribe(&mut ws, &[client::subscribe_alerts()], |t| {
            early.push(t.to_owned())
        })
        .await
        .unwrap();
        let mut w = Watcher { ws, seq: 0 };
        for text in early {
            w.take(&text);
        }
        w
    }

    /// Notes an alerts snapshot's `seq` (never lower than the one before) and returns it.
    fn take(&mut self, text: &str) -> Option<Value> {
        let m: Value = serde_json::from_str(text).unwrap();
        if m["type"] != "alerts" {
            return None;
        }
        let seq = m["seq"].as_u64().unwrap();
        assert!(
            seq >= self.seq,
            "snapshot seq went back from {} to {seq}",
            self.seq
        );
        self.seq = seq;
        Some(m)
    }

    /// Reads snapshots until one lists exactly `alerts` (ids), within `within`.
    async fn until_alerts(&mut self, alerts: &[i64], within: Duration) {
        let read = async {
            loop {
                let text = client::next_text(&mut self.ws).await.unwrap();
                if let Some(m) = self.take(&text) {
                    let mut ids: Vec<i64> = m["alerts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["alert_id"].as_i64().unwrap())
                        .collect();
                    ids.sort_unstable();
                    if ids == alerts {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("no snapshot listing {alerts:?} within {within:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_killed_under_load_loses_no_event_and_leaves_every_client_current() {
    let mut cluster = Cluster::start().await;
    let urls = cluster.urls();
    let db = ScratchDb::migrated("bench").await;
    let poller = spawn_poller_with(&db.url, &["--nats-url", &urls, "--stream-replicas", "3"]).await;
    let poller_node = until(
        "the poller's connection",
        Duration::from_secs(10),
        || async {
            match cluster.connections("pulse-poller").await[..] {
                [(node, _)] => Some(node),
                _ => None,
            }
        },
    )
    .await;
    // The node to kill holds the poller's connection; one gateway is connected to it too, the
    // other to another node. Connections go to a random node of the list, so gateways are
    // started until both places are taken.
    let victim = poller_node;
    let (mut on_victim, mut elsewhere) = (None, None);
    for _ in 0..30 {
        if on_victim.is_some() && elsewhere.is_some() {
            break;
        }
        let before = cluster.connections("pulse-gateway").await;
        let gateway = spawn_gateway_on(&urls).await;
        let node = until(
            "the new gateway's connection",
            Duration::from_secs(10),
            || async {
                cluster
                    .connections("pulse-gateway")
                    .await
                    .into_iter()
                    .find(|c| !before.contains(c))
                    .map(|(node, _)| node)
            },
        )
        .await;
        match (node == victim, &on_victim, &elsewhere) {
            (true, None, _) => on_victim = Some(gateway),
            (false, _, None) => elsewhere = Some(gateway),
            _ => {}
        }
    }
    let (on_victim, elsewhere) = (on_victim.unwrap(), elsewhere.unwrap());
    let survivor = (victim + 1) % 3;
    let observer = async_nats::connect(cluster.nodes[survivor].url())
        .await
        .unwrap();
    let js = jetstream::new(observer.clone());
    for stream in [EVENTS_STREAM, STATE_STREAM] {
        let info = until_stream(&js, stream, "created", Duration::from_secs(20), stream_info).await;
        assert_eq!(info.config.num_replicas, 3, "{stream}");
        cluster.lead(&observer, stream, victim).await;
    }

    // Snapshot holders on both gateways, on a tenant of their own with one open alert.
    let tenant = format!("ncluster-{:08x}", rand::random::<u32>());
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)")
        .bind(&tenant)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
         VALUES ($1, 'dev-1', 'site-1', 80)",
    )
    .bind(&tenant)
    .execute(&pool)
    .await
    .unwrap();
    let open_alert = || async {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, 'dev-1', 'site-1', 'temp_high', 4, 'hot') RETURNING alert_id",
        )
        .bind(&tenant)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let first = open_alert().await;
    let mut watchers = [
        Watcher::connect(&on_victim, &tenant).await,
        Watcher::connect(&elsewhere, &tenant).await,
    ];
    for w in &mut watchers {
        w.until_alerts(&[first], Duration::from_secs(10)).await;
    }

    // Events through the outbox at load; the node is SIGKILLed 2 s in, leaving the streams'
    // election (up to ~10 s) time to end while the bench still waits for the relay.
    let pid = cluster.nodes[victim].pid();
    let mut config = bench_config(
        "events",
        &[on_victim.ws_url(), elsewhere.ws_url()],
        &flags(&format!(
            "--connections 100 --events-per-second 100 --seconds 8 --kill-pid {pid} --kill-after-seconds 2 --database-url {} --poller-metrics {}",
            db.url, poller.metrics_url
        )),
    );
    // The bench watches NATS from a node that stays up.
    config.nats.url = cluster.nodes[survivor].url();
    // Meanwhile events of the test's own tenant, kept in the outbox after the run (the bench
    // removes its tenant, and with it whatever its events still wait for), to check what
    // JetStream stored.
    let writer = {
        let (pool, tenant) = (pool.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            let end = Instant::now() + Duration::from_secs(9);
            let mut written = 0;
            while Instant::now() < end {
                tick.tick().await;
                sqlx::query("SELECT pulse_emit_event($1, 'audit', 'test:tick', '{}'::jsonb)")
                    .bind(&tenant)
                    .execute(&pool)
                    .await
                    .unwrap();
                written += 1;
            }
            written
        })
    };
    let r = bench(config).await;
    let written: u64 = writer.await.unwrap();
    let victim_exit = cluster.nodes[victim]
        .child
        .as_mut()
        .unwrap()
        .wait()
        .unwrap();
    assert!(!victim_exit.success(), "the node was killed: {victim_exit}");
    cluster.nodes[victim].child = None;

    // Every client got every event exactly once, in order, without a reset, and kept its
    // WebSocket: losing a NATS node is invisible to clients.
    assert_clean_connections(&r, 100);
    let s = &r.stages[0];
    let ev = r.events.as_ref().unwrap();
    assert_eq!((ev.inserted, ev.insert_failed, ev.last_seq), (800, 0, 800));
    assert_eq!(ev.killed_pid, Some(pid));
    assert_eq!(s.expected, 100 * 800, "every client expects every event");
    assert_eq!(s.missing, 0, "{s:?}");
    assert_eq!(s.duplicated, 0, "{s:?}");
    assert_eq!(s.received, s.expected);
    // Nothing is held for good: the stall lasts until JetStream has elected the streams' new
    // leader and the relay's next pass (at most 5 s apart) is acknowledged.
    assert!(s.latency.max_ms < 20_000.0, "{:?}", s.latency);
    assert_eq!(ev.resets, 0, "{ev:?}");
    assert_eq!((ev.lost, ev.resume_failed), (0, 0), "{:?}", r.error_samples);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // Counted on NATS: the clients can have an event before JetStream, still electing the
    // stream's new leader, acknowledged it to the poller.
    assert_eq!(ev.relayed, 800, "every event reached NATS");

    // JetStream acknowledged every event in the end, and stored each once despite the resends.
    // Not always in `seq` order: events sent before the stream's new leader took over and
    // sent again can land after later ones that it stored at once (gateways read a topic's
    // history by `seq`, not by stream order).
    until(
        "every event acknowledged",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM events WHERE tenant_id = $1 AND relayed_at IS NULL",
            )
            .bind(&tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
            (waiting == 0).then_some(())
        },
    )
    .await;
    let audit = format!("pulse.v1.{tenant}.events.audit");
    let mut stored = stored_seqs(&js, &audit).await;
    let in_order = stored.is_sorted();
    stored.sort_unstable();
    assert_eq!(stored, (1..=written).collect::<Vec<_>>());
    println!("{written} events of the test's tenant stored once each; in seq order: {in_order}");

    // Both streams are led by a node that is up; snapshots still reach the clients that held
    // on, and a newcomer on either gateway reads the newest one from the stream.
    for stream in [EVENTS_STREAM, STATE_STREAM] {
        let leader = until_stream(
            &js,
            stream,
            "a new leader",
            Duration::from_secs(20),
            stream_leader,
        )
        .await;
        assert_ne!(leader, cluster.nodes[victim].name, "{stream}");
    }
    let second = open_alert().await;
    for w in &mut watchers {
        w.until_alerts(&[first, second], Duration::from_secs(10))
            .await;
    }
    for gateway in [&on_victim, &elsewhere] {
        Watcher::connect(gateway, &tenant)
            .await
            .until_alerts(&[first, second], Duration::from_secs(10))
            .await;
    }

    // The node comes back on its store and catches up: every replica current again, and it
    // holds every event.
    let events_last = until_stream(
        &js,
        EVENTS_STREAM,
        "info",
        Duration::from_secs(10),
        stream_info,
    )
    .await
    .state
    .last_sequence;
    cluster.launch(victim);
    cluster.wait_for_meta_leader().await;
    for stream in [EVENTS_STREAM, STATE_STREAM] {
        until_stream(
            &js,
            stream,
            "every replica current after the restart",
            Duration::from_secs(30),
            replicas_current,
        )
        .await;
    }
    let back = &cluster.nodes[victim];
    until(
        "the restarted node holding every event",
        Duration::from_secs(20),
        || async {
            let jsz = back.monitor("jsz?accounts=true&streams=true").await?;
            let streams = jsz["account_details"][0]["stream_detail"].as_array()?;
            let events = streams.iter().find(|s| s["name"] == EVENTS_STREAM)?;
            (events["state"]["last_seq"].as_u64()? >= events_last).then_some(())
        },
    )
    .await;

    drop(watchers);
    drop(pool);
    drop(on_victim);
    drop(elsewhere);
    drop(poller);
}
