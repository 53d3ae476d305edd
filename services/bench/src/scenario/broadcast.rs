//! `broadcast`, `telemetry` and `sweep`: clients subscribe, the leader publishes to NATS in
//! stages, and every client counts and times what it receives.
//!
//! - broadcast: every client on the run's tenant's alerts; one stage at `--msgs-per-second`.
//! - telemetry: client i holds devices (i·K + j) mod D for j < K, so every device has the
//!   same number of subscribers; devices publish in turn at `--hz` each.
//! - sweep: broadcast in stages at each of `--sweep-rates`, stopping after the first stage
//!   whose p99 passes `--sweep-p99-limit-ms` or whose clients received less than nine tenths
//!   of its messages (alerts are a snapshot subject: a client that falls behind skips to the
//!   newest value).
//!
//! Every subject here is a snapshot subject, so the gateway may merge a slow client's pending
//! snapshot into a newer one (conflation). A message a client did not receive is *merged*
//! when a newer one of its subject reached the client after it, and *lost* when none did: the
//! client ended on an older state than the newest published.
//!
//! A stage's gateway CPU is read from the first publish until the grace period after the
//! last one has passed, so it covers every delivery of the stage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Run;
use crate::BenchError;
use crate::config::Scenario;
use crate::population::{Outcome, Shared};
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
    /// Snapshot frames the gateways conflated over each stage.
    conflated: Vec<Option<u64>>,
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
        // Only a gateway reads the `Pulse-Seq` header; a nats-server would send it on.
        let seq_header = c.protocol == crate::config::Protocol::Pulse;
        Some(Publisher::start(&c.nats, shape, c.payload_bytes, seq_header).await?)
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
                    out.conflated.push(
                        after
                            .conflated()
                            .zip(before.conflated())
                            .map(|(a, b)| (a - b) as u64),
                    );
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
    let results: Vec<StageResult> = published.stages.iter().map(|s| s.0.clone()).collect();
    for (i, (result, cpu, system)) in published.stages.into_iter().enumerate() {
        let fanout = published.fanout.get(i).copied().flatten();
        let ending = Ending::of(&results, i, &outcomes);
        let received = shared.received[i].sum();
        let missing = ending.expected.saturating_sub(received);
        run.report.stages.push(StageReport {
            stage: result.stage,
            msgs_per_second: result.rate,
            published: result.total(),
            expected: ending.expected,
            received,
            duplicated: shared.duplicated[i].sum(),
            missing,
            merged: missing.saturating_sub(ending.lost),
            lost: ending.lost,
            behind: ending.behind,
            gateway_conflated: if run.config.is_leader() {
                published.conflated.get(i).copied().flatten()
            } else {
                None
            },
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

/// How the connected clients ended one stage: the messages they should have received, how
/// many of those no newer message of the same subject followed (`lost`), and how many clients
/// that left on an older state than the stage's newest (`behind`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Ending {
    expected: u64,
    lost: u64,
    behind: u64,
}

impl Ending {
    /// Stage `stage` of `stages` (in order), from each client's newest `seq` per subject.
    ///
    /// The publisher numbers each subject's messages 1, 2, 3, … across all stages, so a stage's
    /// messages of a subject are the next `published` `seq`s after the earlier stages'. A client
    /// that ended on `newest` of a subject never got any above it: those are lost. One below it
    /// that it did not receive was merged into a newer one.
    fn of(stages: &[StageResult], stage: usize, outcomes: &[Outcome]) -> Ending {
        let published = |s: &StageResult, subject: u32| -> u64 {
            s.published.get(subject as usize).copied().unwrap_or(0)
        };
        let mut ending = Ending::default();
        for o in outcomes.iter().filter(|o| o.connected) {
            // A client without devices holds the alerts: subject 0.
            let subjects: &[u32] = if o.devices.is_empty() {
                &[0]
            } else {
                &o.devices
            };
            let mut behind = false;
            for (slot, subject) in subjects.iter().enumerate() {
                let before: u64 = stages[..stage].iter().map(|s| published(s, *subject)).sum();
                let count = published(&stages[stage], *subject);
                let newest = o.newest.get(slot).copied().unwrap_or(0);
                let lost = (before + count).saturating_sub(newest.max(before));
                ending.expected += count;
                ending.lost += lost;
                behind |= lost > 0;
            }
            ending.behind += u64::from(behind);
        }
        ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(stage: u32, published: &[u64]) -> StageResult {
        StageResult {
            stage,
            published: published.to_vec(),
            ..Default::default()
        }
    }

    fn ending(expected: u64, lost: u64, behind: u64) -> Ending {
        Ending {
            expected,
            lost,
            behind,
        }
    }

    fn client(devices: &[u32], newest: &[u64]) -> Outcome {
        Outcome {
            devices: devices.to_vec(),
            connected: true,
            held: true,
            base: 0,
            newest: newest.to_vec(),
        }
    }

    #[test]
    fn a_client_on_the_newest_seq_lost_nothing_whatever_it_skipped() {
        // Alerts 1..=10 in stage 0, 11..=40 in stage 1.
        let stages = [stage(0, &[10]), stage(1, &[30])];
        let current = [client(&[], &[40]), client(&[], &[40])];
        assert_eq!(Ending::of(&stages, 1, &current), ending(2 * 30, 0, 0));
    }

    #[test]
    fn messages_above_a_clients_newest_seq_are_lost_in_their_own_stage() {
        let stages = [stage(0, &[10]), stage(1, &[30])];
        // Ended on seq 8: 9 and 10 of stage 0 and all 30 of stage 1 never came.
        let stuck = [client(&[], &[8]), client(&[], &[40])];
        assert_eq!(Ending::of(&stages, 0, &stuck), ending(2 * 10, 2, 1));
        assert_eq!(Ending::of(&stages, 1, &stuck), ending(2 * 30, 30, 1));
    }

    #[test]
    fn each_device_of_a_client_counts_on_its_own() {
        // Devices 0, 1, 2: 4 readings each.
        let stages = [stage(0, &[4, 4, 4])];
        let clients = [
            client(&[0, 2], &[4, 3]),
            client(&[1], &[4]),
            client(&[2, 1], &[4, 4]),
        ];
        // Five subscriptions of 4 readings; the first client ended one short on device 2.
        assert_eq!(Ending::of(&stages, 0, &clients), ending(5 * 4, 1, 1));
    }

    #[test]
    fn clients_that_never_connected_expect_nothing() {
        let stages = [stage(0, &[10])];
        let mut never = client(&[], &[]);
        never.connected = false;
        assert_eq!(Ending::of(&stages, 0, &[never]), Ending::default());
    }
}
