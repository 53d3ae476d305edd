//! `storm`: connect every client, then cut all connections at the same moment and have every
//! client reconnect and resubscribe at once, with no backoff or jitter (only a 20–100 ms pause
//! before retrying a failed attempt). This is the herd a gateway meets when its clients all
//! lose their connections together (a load balancer or network blip, or the clients of a
//! crashed peer arriving); it does not restart the gateway process itself, so the figure
//! excludes the gateway's own start-up time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Run;
use crate::BenchError;
use crate::population::Shared;
use crate::report::StormStats;

pub async fn run(run: &mut Run) -> Result<(), BenchError> {
    let plans = run.plans(true, |_| Vec::new())?;
    let shared = Arc::new(Shared::new(1));
    let population = run.populate(plans, shared.clone()).await?;
    let planned = population.planned;
    let setup_seconds = population.setup_seconds();
    // Every shard cuts as soon as the leader releases this phase.
    let within = run.phase_timeout();
    run.coord.sync("cut", within, || async {}).await?;
    tracing::info!("cutting every connection");
    population.storm();
    population
        .reconnected(run.config.connect_timeout() + std::time::Duration::from_secs(5))
        .await;
    let hold = run.config.seconds();
    let within = run.phase_timeout();
    run.coord
        .sync("done", within, || async move {
            tokio::time::sleep(hold.min(std::time::Duration::from_secs(2))).await;
        })
        .await?;
    let held = shared.alive.load(Ordering::Relaxed);
    population.finish().await;
    run.report.connections = run.connect_stats(&shared, planned, setup_seconds, held);
    run.report.storm = Some(StormStats {
        clients: shared.established.load(Ordering::Relaxed),
        reconnected: shared.reconnected.load(Ordering::Relaxed),
        failed: shared.reconnect_failed.load(Ordering::Relaxed),
        seconds_to_all: shared.last_reconnect_ns.load(Ordering::Relaxed) as f64 / 1e9,
        reconnects_per_second: 0.0,
        reconnect_latency: shared.reconnect.summary(),
    });
    Ok(())
}
