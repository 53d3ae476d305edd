//! `churn`: `--cycles` connect → subscribe (the tenant's alerts) → ack → close (close frame,
//! wait for the gateway's) cycles, `--churn-concurrency` at a time, over `--tenants` tenants.
//!
//! Afterwards the leader waits (up to 30 s) for every gateway's `/metrics` to show 0
//! connections, 0 subscriptions and 0 NATS subscriptions, and compares the gateway's RSS at
//! the end with its RSS once a tenth of the cycles had run (warm allocator, warm caches).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Run;
use crate::BenchError;
use crate::client::{self, Target};
use crate::population::{ClientPlan, Dial, Shared, establish};
use crate::probe::{GatewayMetrics, Reading};
use crate::report::ChurnStats;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Settled {
    after: Option<GatewayMetrics>,
    leak_free: Option<bool>,
    rss_end: Option<u64>,
}

pub async fn run(run: &mut Run) -> Result<(), BenchError> {
    let total = run.config.cycles;
    let first = run.config.first_index(total);
    let count = run.config.share(total);
    let tenants: Vec<String> = (0..run.config.tenants as u64)
        .map(|i| run.spread_tenant(i))
        .collect();
    let tokens = run.tokens(&tenants)?;
    let shared = Arc::new(Shared::new(1));
    run.shared = Some(shared.clone());
    let within = run.phase_timeout();
    run.coord.sync("start", within, || async {}).await?;

    let next = Arc::new(AtomicU64::new(0));
    let dial = run.dial();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..run.config.churn_concurrency {
        workers.spawn(worker(
            next.clone(),
            count,
            first,
            run.targets.clone(),
            tokens.clone(),
            dial.clone(),
            shared.clone(),
        ));
    }
    // The leader notes the gateway's RSS once a tenth of its cycles are done.
    let mut rss_warm = None;
    if run.config.is_leader() {
        while shared.established.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
            < count / 10
            && !workers.is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rss_warm = run.reading().await.rss_bytes();
    }
    while workers.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        completed = shared.established.load(Ordering::Relaxed),
        failed = shared.failed.load(Ordering::Relaxed),
        seconds,
        "churn cycles done"
    );

    let settled: Settled = {
        let http = run.http.clone();
        let watched = run.watched.clone();
        let within = run.phase_timeout();
        run.coord
            .sync("done", within, || async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let r = Reading::take(&http, &watched).await;
                    let answered = r.metrics.iter().all(Option::is_some);
                    let zero = answered
                        && r.sum(|m| m.connections) == 0.0
                        && r.sum(|m| m.subscriptions) == 0.0
                        && r.sum(|m| m.nats_subscriptions) == 0.0;
                    if zero || Instant::now() >= deadline {
                        let after = r.metrics.iter().flatten().copied().reduce(|mut a, b| {
                            a.connections += b.connections;
                            a.subscriptions += b.subscriptions;
                            a.nats_subscriptions += b.nats_subscriptions;
                            a
                        });
                        return Settled {
                            after,
                            leak_free: answered.then_some(zero),
                            rss_end: r.rss_bytes(),
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await?
    };
    let leader = run.config.is_leader();
    run.report.churn = Some(ChurnStats {
        cycles: count,
        completed: shared.established.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        seconds,
        cycles_per_second: 0.0,
        setup_latency: shared.setup.summary(),
        after: if leader { settled.after } else { None },
        leak_free: if leader { settled.leak_free } else { None },
        rss_warm_bytes: rss_warm,
        rss_end_bytes: if leader { settled.rss_end } else { None },
    });
    Ok(())
}

async fn worker(
    next: Arc<AtomicU64>,
    count: u64,
    first: u64,
    targets: Vec<Arc<Target>>,
    tokens: Vec<Arc<str>>,
    dial: Dial,
    shared: Arc<Shared>,
) {
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= count {
            return;
        }
        let index = first + n;
        let plan = ClientPlan {
            index,
            target: targets[(index % targets.len() as u64) as usize].clone(),
            token: tokens[(index % tokens.len() as u64) as usize].clone(),
            devices: Vec::new(),
            topic: None,
        };
        let begin = Instant::now();
        match establish(&plan, &dial, |_| {}).await {
            Ok((ws, _)) => {
                shared
                    .setup
                    .record(index, begin.elapsed().as_micros() as u64);
                shared.established.fetch_add(1, Ordering::Relaxed);
                client::close(ws, Duration::from_secs(5)).await;
            }
            Err(e) => {
                shared.errors.record(&e);
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
