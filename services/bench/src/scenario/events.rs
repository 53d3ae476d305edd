//! `events`: every client subscribes to one events topic of the run's tenant, the clients
//! spread over the gateways in turn. The leader writes events into the PostgreSQL outbox
//! (`pulse_emit_event`) at `--events-per-second` for `--seconds`; the active poller relays them
//! to NATS and the gateways deliver them in `seq` order. `--kill-after-seconds` after the first
//! insert the leader kills `--kill-pid` with SIGKILL, or restarts the `--restart-pid` gateways
//! one after another (SIGTERM; the next once the previous is gone and ready again on its
//! address, restarted by whatever supervises it), and every client of such a gateway resumes
//! on the next one with `since` = the last `seq` it saw.
//!
//! A client expects every event after the `seq` of its first `subscribed` reply, once each
//! and in order: anything else is missing or duplicated. Resume times run from the fault (just
//! before the signal is sent: the kill, or the SIGTERM of the restart step the loss fell in)
//! to the client seeing its connection end, to its `subscribed` reply on the other gateway,
//! and to its first event after that; the time away runs from the connection's end to that
//! reply. What reaches NATS is counted by a subscription of the bench's own, and by the
//! poller's counter with `--poller-metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Run;
use crate::BenchError;
use crate::client::Target;
use crate::latency::{Latency, Recorder};
use crate::outbox::{Outbox, RelayWatch, Written};
use crate::population::{Resumption, Shared, now_ns};
use crate::report::{EventsStats, RestartStep, StageReport};

/// The topic every client holds.
pub const TOPIC: &str = "bench";

/// How long the leader waits for the relay to bring every event written to NATS.
const RELAY_WAIT: Duration = Duration::from_secs(10);

/// How long the leader waits, in each step of a rolling restart, for the gateway to exit after
/// SIGTERM, and then for a gateway to answer ready on its address.
const RESTART_WAIT: Duration = Duration::from_secs(120);

/// One step of a rolling restart as the leader saw it; wall clocks, nanoseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Restarted {
    pid: u32,
    gateway: String,
    signalled_ns: u64,
    exited_ns: u64,
    ready_ns: u64,
}

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
    /// The steps of the rolling restart carried out.
    restarts: Vec<Restarted>,
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
        // Each gateway to restart, with its address (validated: every one is in --gateway-pid).
        let restarts: Vec<(u32, Arc<Target>)> = run
            .config
            .restart_pids
            .iter()
            .filter_map(|pid| {
                let i = run.config.gateway_pids.iter().position(|p| p == pid)?;
                Some((*pid, run.targets.get(i)?.clone()))
            })
            .collect();
        let restart_after = run.config.kill_after();
        let within = run.phase_timeout() + RELAY_WAIT + RESTART_WAIT * 2 * restarts.len() as u32;
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
                        signal(pid, "KILL").await.map(|()| at)
                    })
                });
                let restarter = (!restarts.is_empty())
                    .then(|| tokio::spawn(rolling_restart(http.clone(), restarts, restart_after)));
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
                if let Some(restarter) = restarter {
                    match restarter.await {
                        Ok((steps, error)) => {
                            out.restarts = steps;
                            out.error = out.error.take().or(error);
                        }
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
        // Events are never merged: every one missing is lost.
        lost: expected.saturating_sub(received),
        seconds: w.seconds,
        latency: shared.latency[0].summary(),
        ..Default::default()
    });
    let (lost, resubscribe, resume, away) = (
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
    );
    // The faults, in order: the kill, or the SIGTERM of each restart step. A lost connection
    // belongs to the latest fault before it on its own gateway (a client slow to read its
    // close may see it after the next step began), unless the gateway's process had gone by
    // then and the gateway did not close it with 1012: then it was on the replacement.
    let place = |url: &str| run.targets.iter().position(|t| t.url == url);
    let faults: Vec<Fault> = match published.killed_ns {
        Some(killed) => {
            let pid = run.config.kill_pid;
            vec![Fault {
                at: killed,
                gateway: run.config.gateway_pids.iter().position(|p| Some(*p) == pid),
                gone: None,
            }]
        }
        None => published
            .restarts
            .iter()
            .map(|r| Fault {
                at: r.signalled_ns,
                gateway: place(&r.gateway),
                gone: Some(r.exited_ns),
            })
            .collect(),
    };
    let secs = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e9;
    let mut steps: Vec<RestartStep> = published
        .restarts
        .iter()
        .map(|r| RestartStep {
            pid: r.pid,
            gateway: r.gateway.clone(),
            signalled_at_seconds: secs(w.started_ns, r.signalled_ns),
            exited_after_seconds: secs(r.signalled_ns, r.exited_ns),
            ready_after_seconds: secs(r.signalled_ns, r.ready_ns),
            ..Default::default()
        })
        .collect();
    for (i, r) in shared.resumptions.lock().iter().enumerate() {
        let who = i as u64;
        if let Some(at) = r.subscribed_ns {
            away.record(who, at.saturating_sub(r.lost_ns) / 1000);
        }
        let Some(n) = faults.iter().rposition(|f| f.caused(r)) else {
            continue;
        };
        let fault = faults[n].at;
        lost.record(who, (r.lost_ns - fault) / 1000);
        if let Some(at) = r.subscribed_ns {
            resubscribe.record(who, at.saturating_sub(fault) / 1000);
        }
        if let Some(at) = r.first_event_ns {
            resume.record(who, at.saturating_sub(fault) / 1000);
        }
        if let Some(step) = steps.get_mut(n) {
            step.lost += 1;
            if let Some(at) = r.subscribed_ns {
                step.resumed += 1;
                step.seconds_to_all_resumed = step.seconds_to_all_resumed.max(secs(fault, at));
            }
        }
    }
    let behind = outcomes
        .iter()
        .filter(|o| o.connected && o.newest.first().is_none_or(|n| *n < w.last_seq))
        .count() as u64;
    let leader = run.config.is_leader();
    run.report.events = Some(EventsStats {
        subject,
        rate: w.rate,
        inserted: leader_only(leader, w.inserted),
        insert_failed: leader_only(leader, w.failed),
        insert_seconds: leader_only(leader, w.seconds),
        insert_latency: leader_only(leader, w.insert_latency.clone()),
        relayed: leader_only(leader, published.relayed),
        relay_seconds: leader_only(leader, published.relay_seconds),
        relay_latency: leader_only(leader, published.relay_latency.clone()),
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
        lost_drained: shared.lost_drained.load(Ordering::Relaxed),
        resets: shared.resets.load(Ordering::Relaxed),
        behind,
        restarts: steps,
        lost_latency: lost.summary(),
        resubscribe_latency: resubscribe.summary(),
        resume_latency: resume.summary(),
        away_latency: away.summary(),
        caught_up_latency: shared.caught_up.summary(),
        ..Default::default()
    });
    let stray = shared.stray.load(Ordering::Relaxed);
    if stray > 0 {
        run.report.errors.insert("stray_frames".into(), stray);
    }
    Ok(())
}

/// `figure` in the leader's report; nothing (zero, empty) in the other shards', so that merged
/// reports count the outbox and the relay once.
fn leader_only<T: Default>(leader: bool, figure: T) -> T {
    if leader { figure } else { T::default() }
}

/// A kill or a restart step, as the clients' losses are matched to it.
struct Fault {
    /// The signal, nanoseconds since the Unix epoch.
    at: u64,
    /// The gateway signalled (its place in `--gateway`), when known.
    gateway: Option<usize>,
    /// When its process was gone.
    gone: Option<u64>,
}

impl Fault {
    /// Whether it can have ended connection `r`.
    fn caused(&self, r: &Resumption) -> bool {
        self.at <= r.lost_ns
            && self.gateway.is_none_or(|g| g == r.gateway)
            && (r.drained || self.gone.is_none_or(|gone| r.lost_ns <= gone))
    }
}

/// A rolling restart: after `after`, each gateway in turn gets SIGTERM; the next one only once
/// it has exited (drained) and a gateway answers ready on its address again. Returns the steps
/// carried out, and why it stopped early if it did.
async fn rolling_restart(
    http: reqwest::Client,
    gateways: Vec<(u32, Arc<Target>)>,
    after: Duration,
) -> (Vec<Restarted>, Option<String>) {
    tokio::time::sleep(after).await;
    let mut done = Vec::with_capacity(gateways.len());
    for (pid, target) in gateways {
        let signalled_ns = now_ns();
        tracing::info!(pid, gateway = %target.url, "restarting the gateway: SIGTERM");
        if let Err(e) = signal(pid, "TERM").await {
            return (done, Some(e));
        }
        let deadline = Instant::now() + RESTART_WAIT;
        while !crate::probe::exited(pid) {
            if Instant::now() >= deadline {
                let e = format!("gateway pid {pid} still running {RESTART_WAIT:?} after SIGTERM");
                return (done, Some(e));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let exited_ns = now_ns();
        let ready_url = target.ready_url();
        let deadline = Instant::now() + RESTART_WAIT;
        while !crate::probe::ready(&http, &ready_url).await {
            if Instant::now() >= deadline {
                let e = format!(
                    "no gateway ready at {ready_url} {RESTART_WAIT:?} after pid {pid} exited \
                     (the bench restarts nothing: its supervisor must)"
                );
                return (done, Some(e));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready_ns = now_ns();
        tracing::info!(
            pid,
            gateway = %target.url,
            drained_in = ?Duration::from_nanos(exited_ns - signalled_ns),
            back_in = ?Duration::from_nanos(ready_ns - signalled_ns),
            "gateway restarted"
        );
        done.push(Restarted {
            pid,
            gateway: target.url.clone(),
            signalled_ns,
            exited_ns,
            ready_ns,
        });
    }
    (done, None)
}

/// Sends `SIG<name>` to `pid` with the `kill` program (the workspace forbids the unsafe code a
/// direct `kill(2)` needs).
async fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s {name} {pid} failed ({status})"))
    }
}
