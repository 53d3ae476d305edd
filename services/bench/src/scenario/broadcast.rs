//! `broadcast`, `telemetry` and `sweep`: clients subscribe, the leader publishes to NATS in
//! stages, and every client counts and times what it receives.
//!
//! - broadcast: every client on the run's tenant's alerts; one stage at `--msgs-per-second`.
//! - telemetry: client i holds devices (i·K + j) mod D for j < K, so every device has the
//!   same number of subscribers; devices publish in turn at `--hz` each.
//! - sweep: broadcast in stages at each of `--sweep-rates`, stopping after the first stage
//!   whose p99 passes `--sweep-p99-limit-ms` or that lost more than a tenth of its messages
//!   (alerts are a snapshot subject: a client that falls behind skips to the newest value,
//!   and the bench counts every skipped message as missing).
//!
//! A stage's gateway CPU is read from the first publish until the grace period after the
//! last one has passed, so it covers every delivery of the stage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Run;
use crate::BenchError;
use crate::config::Scenario;
use crate::population::Shared;
use crate::publisher::{Publisher, Shape, StageResult};
use crate::report::StageReport;

/// What the leader tells every shard once publishing is over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Published {
    /// Each stage with the gateways' CPU seconds and kernel CPU seconds over it.
    stages: Vec<(StageResult, Option<f64>, Option<f64>)>,
    /// Each stage's gateway-side fan-out latency (p50 ms, p99 ms, samples) from `/metrics`.
    fanout: Vec<Option<(f64, f64, f64)>>,
    /// The gateways' RSS at the end of each stage.
    rss: Vec<Option<u64>>,
    error: Option<String>,
}

pub async fn run(run: &mut Run) -> Result<(), BenchError> {
    let c = &run.config;
    let (shape, rates): (Shape, Vec<f64>) = match c.scenario {
        Scenario::Telemetry => (
            Shape::Telemetry {
                tenant: run.tenant.clone(),
                devices: c.devices,
            },
            vec![c.devices as f64 * c.hz],
        ),
        Scenario::Sweep => (
            Shape::Alerts {
                tenant: run.tenant.clone(),
            },
            c.sweep_rates.clone(),
        ),
        _ => (
            Shape::Alerts {
                tenant: run.tenant.clone(),
            },
            vec![c.msgs_per_second],
        ),
    };
    let (per_client, devices) = (c.per_client as u64, c.devices as u64);
    let telemetry = c.scenario == Scenario::Telemetry;
    let plans = run.plans(false, |i| {
        if telemetry {
            (0..per_client)
                .map(|j| ((i * per_client + j) % devices) as u32)
                .collect()
        } else {
            Vec::new()
        }
    })?;
    let publisher = if c.is_leader() {
        Some(Publisher::start(&c.nats_url, shape, c.payload_bytes).await?)
    } else {
        None
    };
    if telemetry {
        crate::publisher::register_devices(&run.nats, &run.tenant, c.devices).await?;
    }
    let shared = Arc::new(Shared::new(rates.len()));
    let population = run.populate(plans, shared.clone()).await?;
    let planned = population.planned;
    let setup_seconds = population.setup_seconds();

    let published: Published = {
        let http = run.http.clone();
        let watched = run.watched.clone();
        let shared = shared.clone();
        let seconds = run.config.seconds();
        let grace = run.config.grace();
        let sweep = run.config.scenario == Scenario::Sweep;
        let limit_ms = run.config.sweep_p99_limit_ms;
        let within = run.phase_timeout();
        run.coord
            .sync("done", within, || async move {
                let mut out = Published::default();
                let Some(publisher) = publisher else {
                    return out;
                };
                for (stage, rate) in rates.iter().enumerate() {
                    let before = crate::probe::Reading::take(&http, &watched).await;
                    tracing::info!(stage, rate, "publishing");
                    let result = match publisher.stage(stage as u32, *rate, seconds).await {
                        Ok(r) => r,
                        Err(e) => {
                            out.error = Some(e.to_string());
                            break;
                        }
                    };
                    tokio::time::sleep(grace).await;
                    let after = crate::probe::Reading::take(&http, &watched).await;
                    let cpu = after
                        .cpu_seconds()
                        .zip(before.cpu_seconds())
                        .map(|(a, b)| a - b);
                    let system = after
                        .system_seconds()
                        .zip(before.system_seconds())
                        .map(|(a, b)| a - b);
                    let own_expected = shared.alive.load(Ordering::Relaxed) * result.total();
                    let own_received = shared.received[stage].sum();
                    let p99 = shared.latency[stage].summary().p99_ms;
                    tracing::info!(
                        stage,
                        rate,
                        p99_ms = p99,
                        received = own_received,
                        "stage published"
                    );
                    out.stages.push((result, cpu, system));
                    out.rss.push(after.rss_bytes());
                    out.fanout.push(crate::probe::fanout_quantiles(
                        &before.fanout_total(),
                        &after.fanout_total(),
                    ));
                    // Snapshot subjects conflate for clients that fall behind, so some loss
                    // is expected near the limit; past a tenth the stage says enough.
                    if sweep && (p99 > limit_ms || own_received * 10 < own_expected * 9) {
                        tracing::info!(stage, rate, p99, "sweep limit reached");
                        break;
                    }
                }
                out
            })
            .await?
    };
    let held = shared.alive.load(Ordering::Relaxed);
    let outcomes = population.finish().await;
    if let Some(e) = published.error {
        return Err(BenchError::Publish(
            crate::publisher::PublishError::Publish(e),
        ));
    }
    run.report.connections = run.connect_stats(&shared, planned, setup_seconds, held);
    for (i, (result, cpu, system)) in published.stages.into_iter().enumerate() {
        let fanout = published.fanout.get(i).copied().flatten();
        let expected: u64 = outcomes
            .iter()
            .filter(|o| o.connected)
            .map(|o| {
                if o.devices.is_empty() {
                    result.published.first().copied().unwrap_or(0)
                } else {
                    o.devices
                        .iter()
                        .map(|d| result.published.get(*d as usize).copied().unwrap_or(0))
                        .sum()
                }
            })
            .sum();
        let received = shared.received[i].sum();
        run.report.stages.push(StageReport {
            stage: result.stage,
            msgs_per_second: result.rate,
            published: result.total(),
            expected,
            received,
            duplicated: shared.duplicated[i].sum(),
            missing: expected.saturating_sub(received),
            seconds: result.seconds,
            deliveries_per_second: 0.0,
            latency: shared.latency[i].summary(),
            gateway_cpu_seconds: if run.config.is_leader() { cpu } else { None },
            gateway_system_seconds: if run.config.is_leader() { system } else { None },
            deliveries_per_gateway_cpu_second: None,
            gateway_rss_bytes: published.rss.get(i).copied().flatten(),
            gateway_fanout_p50_ms: fanout.map(|f| f.0),
            gateway_fanout_p99_ms: fanout.map(|f| f.1),
        });
    }
    let stray = shared.stray.load(Ordering::Relaxed);
    if stray > 0 {
        run.report.errors.insert("stray_frames".into(), stray);
    }
    Ok(())
}
