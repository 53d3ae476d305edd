//! `events`: every client subscribes to one events topic of the run's tenant, the clients
//! spread over the gateways in turn. The leader writes events into the PostgreSQL outbox
//! (`pulse_emit_event`) at `--events-per-second` for `--seconds`; the active poller relays them
//! to NATS and the gateways deliver them in `seq` order. `--kill-after-seconds` after the first
//! insert the leader kills `--kill-pid` with SIGKILL, and every client of that gateway resumes
//! on the next one with `since` = the last `seq` it saw.
//!
//! A client expects every event after the `seq` of its first `subscribed` reply, once each
//! and in order: anything else is missing or duplicated. Resume times run from the kill (just
//! before the signal is sent) to the client seeing its connection end, to its `subscribed`
//! reply on the other gateway, and to its first event after that. What reaches NATS is counted by a subscription of the bench's
//! own, and by the poller's counter with `--poller-metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Run;
use crate::BenchError;
use crate::latency::{Latency, Recorder};
use crate::outbox::{Outbox, RelayWatch, Written};
use crate::population::{Shared, now_ns};
use crate::report::{EventsStats, StageReport};

/// The topic every client holds.
pub const TOPIC: &str = "bench";

/// How long the leader waits for the relay to bring every event written to NATS.
const RELAY_WAIT: Duration = Duration::from_secs(10);

/// What the leader tells every shard once the events are written and delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Published {
    written: Written,
    relayed: u64,
    relay_seconds: f64,
    relay_latency: Latency,
    poller_relayed: Option<u64>,
    /// Wall clock of the kill, nanoseconds since the Unix epoch.
    killed_ns: Option<u64>,
    error: Option<String>,
}

pub async fn run(run: &mut Run) -> Result<(), BenchError> {
    let topic: Arc<str> = Arc::from(TOPIC);
    let mut plans = run.plans(false, |_| Vec::new())?;
    for plan in &mut plans {
        plan.topic = Some(topic.clone());
    }
    let c = &run.config;
    let subject = format!("pulse.v1.{}.events.{TOPIC}", run.tenant);
    let leader = if c.is_leader() {
        let url = c.database_url.as_deref().unwrap_or_default();
        let outbox =
            Outbox::start(url, &run.tenant, TOPIC, c.payload_bytes, c.db_connections).await?;
        let watch = RelayWatch::start(&run.nats, subject.clone())
            .await
            .map_err(|e| BenchError::Nats(e.to_string()))?;
        Some((outbox, watch))
    } else {
        None
    };
    let shared = Arc::new(Shared::new(1));
    let population = run.populate(plans, shared.clone()).await?;
    let planned = population.planned;
    let setup_seconds = population.setup_seconds();

    let published: Published = {
        let http = run.http.clone();
        let poller = run.config.poller_metrics.clone();
        let (rate, seconds, grace) = (
            run.config.events_per_second,
            run.config.seconds(),
            run.config.grace(),
        );
        let kill = run
            .config
            .kill_pid
            .map(|pid| (pid, run.config.kill_after()));
        let within = run.phase_timeout() + RELAY_WAIT;
        run.coord
            .sync("done", within, || async move {
                let Some((outbox, watch)) = leader else {
                    return Published::default();
                };
                let mut out = Published::default();
                let before = match &poller {
                    Some(url) => crate::probe::poller_relayed(&http, url).await,
                    None => None,
                };
                let killer = kill.map(|(pid, after)| {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let at = now_ns();
                        tracing::info!(pid, "killing the gateway");
                        kill_now(pid).await.map(|()| at)
                    })
                });
                tracing::info!(rate, ?seconds, "writing events");
                match outbox.write(rate, seconds).await {
                    Ok(w) => out.written = w,
                    Err(e) => out.error = Some(e.to_string()),
                }
                if let Some(killer) = killer {
                    match killer.await {
                        Ok(Ok(at)) => out.killed_ns = Some(at),
                        Ok(Err(e)) => out.error = out.error.take().or(Some(e)),
                        Err(e) => out.error = out.error.take().or(Some(e.to_string())),
                    }
                }
                // Every event written reaches NATS, then the clients get their grace period.
                let deadline = Instant::now() + RELAY_WAIT;
                while watch.relayed() < out.written.inserted && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(grace).await;
                let relayed = watch.summary();
                out.relayed = relayed.relayed;
                out.relay_seconds =
                    relayed.last_ns.saturating_sub(out.written.started_ns) as f64 / 1e9;
                out.relay_latency = relayed.latency;
                if let (Some(url), Some(before)) = (&poller, before) {
                    out.poller_relayed = crate::probe::poller_relayed(&http, url)
                        .await
                        .map(|after| after.saturating_sub(before));
                }
                tracing::info!(
                    inserted = out.written.inserted,
                    relayed = out.relayed,
                    "events written and relayed"
                );
                outbox.remove().await;
                out
            })
            .await?
    };
    let held = shared.alive.load(Ordering::Relaxed);
    let outcomes = population.finish().await;
    if let Some(e) = published.error {
        return Err(BenchError::Events(e));
    }
    run.report.connections = run.connect_stats(&shared, planned, setup_seconds, held);
    let w = &published.written;
    let expected: u64 = outcomes
        .iter()
        .filter(|o| o.connected)
        .map(|o| w.last_seq.saturating_sub(o.base))
        .sum();
    let received = shared.received[0].sum();
    run.report.stages.push(StageReport {
        stage: 0,
        msgs_per_second: w.rate,
        published: w.inserted,
        expected,
        received,
        duplicated: shared.duplicated[0].sum(),
        missing: expected.saturating_sub(received),
        seconds: w.seconds,
        latency: shared.latency[0].summary(),
        ..Default::default()
    });
    let (lost, resubscribe, resume) = (Recorder::new(), Recorder::new(), Recorder::new());
    if let Some(killed) = published.killed_ns {
        for (i, r) in shared.resumptions.lock().iter().enumerate() {
            if r.lost_ns < killed {
                continue;
            }
            lost.record(i as u64, (r.lost_ns - killed) / 1000);
            if let Some(at) = r.subscribed_ns {
                resubscribe.record(i as u64, at.saturating_sub(killed) / 1000);
            }
            if let Some(at) = r.first_event_ns {
                resume.record(i as u64, at.saturating_sub(killed) / 1000);
            }
        }
    }
    let leader = run.config.is_leader();
    run.report.events = Some(EventsStats {
        subject,
        rate: w.rate,
        inserted: if leader { w.inserted } else { 0 },
        insert_failed: if leader { w.failed } else { 0 },
        insert_seconds: if leader { w.seconds } else { 0.0 },
        insert_latency: if leader {
            w.insert_latency.clone()
        } else {
            Latency::default()
        },
        relayed: if leader { published.relayed } else { 0 },
        relay_seconds: if leader { published.relay_seconds } else { 0.0 },
        relay_latency: if leader {
            published.relay_latency.clone()
        } else {
            Latency::default()
        },
        poller_relayed: published.poller_relayed.filter(|_| leader),
        last_seq: w.last_seq,
        killed_pid: run
            .config
            .kill_pid
            .filter(|_| published.killed_ns.is_some()),
        killed_at_seconds: published
            .killed_ns
            .map(|at| at.saturating_sub(w.started_ns) as f64 / 1e9),
        lost: shared.lost.load(Ordering::Relaxed),
        resumed: shared.resumed.load(Ordering::Relaxed),
        resume_failed: shared.resume_failed.load(Ordering::Relaxed),
        resets: shared.resets.load(Ordering::Relaxed),
        lost_latency: lost.summary(),
        resubscribe_latency: resubscribe.summary(),
        resume_latency: resume.summary(),
        caught_up_latency: shared.caught_up.summary(),
        ..Default::default()
    });
    let stray = shared.stray.load(Ordering::Relaxed);
    if stray > 0 {
        run.report.errors.insert("stray_frames".into(), stray);
    }
    Ok(())
}

/// Sends SIGKILL to `pid` with the `kill` program (the workspace forbids the unsafe code a
/// direct `kill(2)` needs).
async fn kill_now(pid: u32) -> Result<(), String> {
    let status = tokio::process::Command::new("kill")
        .args(["-s", "KILL", &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s KILL {pid} failed ({status})"))
    }
}
