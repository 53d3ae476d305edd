//! Merging shards' reports: every figure of every merged part, each by its own rule.

use std::collections::BTreeMap;

use serde::Serialize;

use super::*;
use crate::latency::Recorder;

/// A latency holding `n` samples from `first` microseconds on, one a microsecond, for each
/// `(first, n)`.
fn latency(spans: &[(u64, u64)]) -> Latency {
    let r = Recorder::new();
    let samples = spans.iter().flat_map(|(first, n)| *first..first + n);
    for (who, us) in samples.enumerate() {
        r.record(who as u64, us);
    }
    r.summary()
}

/// Compares every figure as JSON; a failure names the figures that differ.
#[track_caller]
fn assert_same<T: Serialize>(got: &T, want: &T) {
    let (got, want) = (
        serde_json::to_value(got).expect("a report serializes"),
        serde_json::to_value(want).expect("a report serializes"),
    );
    let (Some(g), Some(w)) = (got.as_object(), want.as_object()) else {
        return assert_eq!(got, want);
    };
    let differ: Vec<String> = w
        .iter()
        .filter(|(k, v)| g.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: got {}, want {v}",
                g.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert_eq!(g.len(), w.len());
}

fn stage(n: u32, shard: u64, publisher: Option<(u64, f64)>, gateway: Option<f64>) -> StageReport {
    let (published, msgs_per_second) = publisher.unwrap_or_default();
    StageReport {
        stage: n,
        msgs_per_second,
        published,
        expected: 100 * shard,
        received: 90 * shard,
        duplicated: shard,
        missing: 10 * shard,
        merged: 6 * shard,
        lost: 4 * shard,
        behind: 1,
        gateway_conflated: gateway.map(|g| g as u64 * 10),
        seconds: [3.0, 4.0, 2.0][shard as usize - 1],
        // Derived: whatever a shard says, the merge computes them again.
        deliveries_per_second: 1.0,
        latency: latency(&[(1000 * shard, 90 * shard)]),
        gateway_cpu_seconds: gateway,
        gateway_system_seconds: gateway.map(|g| g / 4.0),
        deliveries_per_gateway_cpu_second: Some(1.0),
        gateway_rss_bytes: gateway.map(|g| g as u64 * 1_000_000),
        gateway_fanout_p50_ms: gateway.map(|g| g / 10.0),
        gateway_fanout_p99_ms: gateway.map(|g| g / 2.0),
    }
}

fn with_stages(stages: Vec<StageReport>) -> Report {
    Report {
        stages,
        ..Default::default()
    }
}

/// Three shards of one run report stage 0; the first knows neither the publisher's figures
/// nor the gateway's, the other two both (the same ones in a real run, different ones here so
/// that the figure kept shows which shard it came from). Counts add, the publisher's figures
/// come out once, seconds take the longest, gateway figures the first known, latencies hold
/// every sample, and the rates are computed again from the merged counts.
#[test]
fn stages_of_three_shards_merge_every_figure_by_its_rule() {
    let shards = vec![
        with_stages(vec![stage(0, 1, None, None)]),
        with_stages(vec![stage(0, 2, Some((40, 10.0)), Some(2.0))]),
        with_stages(vec![
            stage(0, 3, Some((40, 10.0)), Some(5.0)),
            stage(1, 3, Some((30, 20.0)), None),
        ]),
    ];
    let merged = Report::merge(shards).expect("three reports");
    let want = StageReport {
        stage: 0,
        msgs_per_second: 10.0,
        published: 40,
        expected: 600,
        received: 540,
        duplicated: 6,
        missing: 60,
        merged: 36,
        lost: 24,
        behind: 3,
        gateway_conflated: Some(20),
        seconds: 4.0,
        deliveries_per_second: 540.0 / 4.0,
        latency: latency(&[(1000, 90), (2000, 180), (3000, 270)]),
        gateway_cpu_seconds: Some(2.0),
        gateway_system_seconds: Some(0.5),
        deliveries_per_gateway_cpu_second: Some(540.0 / 2.0),
        gateway_rss_bytes: Some(2_000_000),
        gateway_fanout_p50_ms: Some(0.2),
        gateway_fanout_p99_ms: Some(1.0),
    };
    assert_eq!(merged.stages.len(), 2);
    assert_same(&merged.stages[0], &want);
    // A stage only one shard reached is that shard's, its rates computed again.
    let mut only = stage(1, 3, Some((30, 20.0)), None);
    only.deliveries_per_second = 270.0 / 2.0;
    only.deliveries_per_gateway_cpu_second = None;
    assert_same(&merged.stages[1], &only);
}

fn churn(shard: u64, leader: bool) -> ChurnStats {
    let after = GatewayMetrics {
        connections: 0.0,
        messages_out: 7.0,
        ..Default::default()
    };
    ChurnStats {
        cycles: 100 * shard,
        completed: 99 * shard,
        failed: shard,
        seconds: [5.0, 4.0][shard as usize - 1],
        cycles_per_second: 1.0,
        setup_latency: latency(&[(500 * shard, 99 * shard)]),
        after: leader.then_some(after),
        leak_free: leader.then_some(true),
        rss_warm_bytes: leader.then_some(10_000_000),
        rss_end_bytes: leader.then_some(11_000_000),
    }
}

fn storm(shard: u64) -> StormStats {
    StormStats {
        clients: 50 * shard,
        reconnected: 49 * shard,
        failed: shard,
        seconds_to_all: [1.5, 2.5][shard as usize - 1],
        reconnects_per_second: 1.0,
        reconnect_latency: latency(&[(700 * shard, 49 * shard)]),
    }
}

/// Churn and storm figures of two shards, the leader's (with the gateway's figures) second.
#[test]
fn churn_and_storm_of_two_shards_merge_every_figure_by_its_rule() {
    let shard = |n: u64, leader| Report {
        churn: Some(churn(n, leader)),
        storm: Some(storm(n)),
        ..Default::default()
    };
    let merged = Report::merge(vec![shard(1, false), shard(2, true)]).expect("two reports");
    let leader = churn(2, true);
    assert_same(
        &merged.churn,
        &Some(ChurnStats {
            cycles: 300,
            completed: 297,
            failed: 3,
            seconds: 5.0,
            cycles_per_second: 297.0 / 5.0,
            setup_latency: latency(&[(500, 99), (1000, 198)]),
            ..leader
        }),
    );
    assert_same(
        &merged.storm,
        &Some(StormStats {
            clients: 150,
            reconnected: 147,
            failed: 3,
            seconds_to_all: 2.5,
            reconnects_per_second: 147.0 / 2.5,
            reconnect_latency: latency(&[(700, 49), (1400, 98)]),
        }),
    );
    // Figures only one shard has are that shard's.
    let alone = Report::merge(vec![
        Report::default(),
        Report {
            storm: Some(storm(1)),
            ..Default::default()
        },
    ])
    .expect("two reports");
    assert!(alone.churn.is_none());
    assert_eq!(alone.storm.map(|s| s.clients), Some(50));
}

fn restart_step(lost: u64, resumed: u64, seconds_to_all_resumed: f64) -> RestartStep {
    RestartStep {
        pid: 4321,
        gateway: "ws://127.0.0.1:1/ws".into(),
        signalled_at_seconds: 1.0,
        exited_after_seconds: 0.5,
        ready_after_seconds: 0.8,
        lost,
        resumed,
        seconds_to_all_resumed,
    }
}

/// The events figures of a run: the outbox's and the relay's only in the leader's report
/// (zero, empty or unknown in the others'), the clients' in each.
fn events(shard: u64, leader: bool) -> EventsStats {
    let only = |n: u64| if leader { n } else { 0 };
    let lead_latency = |from: u64| {
        if leader {
            latency(&[(from, 200)])
        } else {
            Latency::default()
        }
    };
    EventsStats {
        subject: "pulse.v1.t.events.bench".into(),
        rate: 50.0,
        inserted: only(200),
        insert_failed: only(1),
        insert_seconds: only(4) as f64,
        inserted_per_second: 1.0,
        insert_latency: lead_latency(300),
        relayed: only(200),
        relay_seconds: only(5) as f64,
        relayed_per_second: 1.0,
        relay_latency: lead_latency(900),
        poller_relayed: leader.then_some(200),
        last_seq: 200,
        killed_pid: Some(1234),
        killed_at_seconds: Some(2.0),
        restarts: vec![restart_step(shard, shard, shard as f64)],
        lost: 10 * shard,
        resumed: 9 * shard,
        resume_failed: shard,
        lost_drained: 2 * shard,
        resets: shard,
        behind: shard,
        lost_latency: latency(&[(100 * shard, 10 * shard)]),
        resubscribe_latency: latency(&[(200 * shard, 9 * shard)]),
        resume_latency: latency(&[(300 * shard, 9 * shard)]),
        away_latency: latency(&[(400 * shard, 9 * shard)]),
        caught_up_latency: latency(&[(1500 * shard, 5 * shard)]),
    }
}

/// The leader's report second: its outbox and relay figures still come out once, and the
/// clients' of both add up.
#[test]
fn events_of_two_shards_merge_every_figure_by_its_rule() {
    let shard = |n: u64, leader| Report {
        events: Some(events(n, leader)),
        ..Default::default()
    };
    let merged = Report::merge(vec![shard(1, false), shard(2, true)]).expect("two reports");
    let want = EventsStats {
        inserted_per_second: 200.0 / 4.0,
        relayed_per_second: 200.0 / 5.0,
        restarts: vec![restart_step(3, 3, 2.0)],
        lost: 30,
        resumed: 27,
        resume_failed: 3,
        lost_drained: 6,
        resets: 3,
        behind: 3,
        lost_latency: latency(&[(100, 10), (200, 20)]),
        resubscribe_latency: latency(&[(200, 9), (400, 18)]),
        resume_latency: latency(&[(300, 9), (600, 18)]),
        away_latency: latency(&[(400, 9), (800, 18)]),
        caught_up_latency: latency(&[(1500, 5), (3000, 10)]),
        ..events(2, true)
    };
    assert_same(&merged.events, &Some(want));
}

/// The report's own figures: the first shard's description of the run, connections and
/// errors added up, the gateway's cost from the first shard that measured it.
#[test]
fn reports_of_two_shards_merge_their_own_figures() {
    let connections = |shard: u64| ConnectStats {
        attempted: 75 * shard,
        established: 74 * shard,
        failed: shard,
        held: 73 * shard,
        setup_seconds: [2.0, 1.0][shard as usize - 1],
        per_second: 1.0,
        setup_latency: latency(&[(800 * shard, 74 * shard)]),
    };
    let gateway = GatewayCost {
        pids: vec![4321],
        rss_before_bytes: Some(1_000_000),
        rss_connected_bytes: Some(3_000_000),
        rss_per_connection_bytes: None,
        connect_cpu_seconds: Some(0.5),
        connected: None,
    };
    let shard = |n: u64| Report {
        scenario: "idle".into(),
        run_id: format!("run-{n}"),
        shards: vec![n as usize],
        started_at: format!("2025-01-0{n}T00:00:00Z"),
        command: format!("pulse-bench run --shard {n}"),
        load_average: format!("0.{n}"),
        settings: serde_json::json!({ "shard": n }),
        connections: connections(n),
        gateway: (n == 2).then(|| gateway.clone()),
        bench_cpu_seconds: n as f64,
        errors: BTreeMap::from([("timeout".into(), n), (format!("only_{n}"), 1)]),
        error_samples: (0..6).map(|i| format!("shard {n} error {i}")).collect(),
        ..Default::default()
    };
    let merged = Report::merge(vec![shard(2), shard(1)]).expect("two reports");
    let mut want = shard(2);
    want.shards = vec![1, 2];
    want.connections = ConnectStats {
        attempted: 225,
        established: 222,
        failed: 3,
        held: 219,
        setup_seconds: 2.0,
        per_second: 222.0 / 2.0,
        setup_latency: latency(&[(800, 74), (1600, 148)]),
    };
    want.gateway = Some(GatewayCost {
        rss_per_connection_bytes: Some(2_000_000.0 / 219.0),
        ..gateway
    });
    want.bench_cpu_seconds = 3.0;
    want.errors = BTreeMap::from([
        ("only_1".into(), 1),
        ("only_2".into(), 1),
        ("timeout".into(), 3),
    ]);
    want.error_samples
        .extend((0..4).map(|i| format!("shard 1 error {i}")));
    assert_same(&merged, &want);
}

/// A single report comes out of a merge as it went in (its derived figures already computed).
#[test]
fn a_single_report_merges_into_itself() {
    let mut one = with_stages(vec![stage(0, 2, Some((40, 10.0)), Some(2.0))]);
    one.churn = Some(churn(1, true));
    one.storm = Some(storm(1));
    one.events = Some(events(1, true));
    one.finish();
    let merged = Report::merge(vec![one.clone()]).expect("one report");
    assert_same(&merged, &one);
}
