//! `idle`: connect every client (each subscribes to its tenant's alerts), hold them for
//! `--seconds`, count how many are still there.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Run;
use crate::BenchError;
use crate::population::Shared;

pub async fn run(run: &mut Run) -> Result<(), BenchError> {
    let plans = run.plans(true, |_| Vec::new())?;
    let shared = Arc::new(Shared::new(1));
    let population = run.populate(plans, shared.clone()).await?;
    let hold = run.config.seconds();
    let within = run.phase_timeout();
    run.coord
        .sync("done", within, || async move {
            tokio::time::sleep(hold).await;
        })
        .await?;
    let held = shared.alive.load(Ordering::Relaxed);
    let planned = population.planned;
    let setup_seconds = population.setup_seconds();
    population.finish().await;
    run.report.connections = run.connect_stats(&shared, planned, setup_seconds, held);
    Ok(())
}
