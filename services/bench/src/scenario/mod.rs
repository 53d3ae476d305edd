//! The scenarios, and what they share: the run's identity and tenants, tokens, the gateways
//! watched, the phases every shard goes through together, and the report they fill.
//!
//! Every population scenario goes through the same phases, in step across shards:
//! `start` (the leader reads the gateways' baseline) → ramp → `connected` (the leader reads
//! the gateways again: RSS per connection, setup CPU) → the scenario's work → `done`.

mod broadcast;
mod churn;
mod events;
mod idle;
mod storm;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client::Target;
use crate::config::{BenchConfig, Scenario};
use crate::coord::Coordinator;
use crate::population::{ClientPlan, Dial, Population, Shared};
use crate::probe::{Reading, Watched};
use crate::report::{ConnectStats, GatewayCost, Report};
use crate::{BenchError, token};

/// Token lifetime: longer than any run.
const TOKEN_TTL_SECONDS: u64 = 6 * 3600;

/// Runs the configured scenario (this process's shard of it) and returns its report.
pub async fn run(config: BenchConfig) -> Result<Report, BenchError> {
    config.validate()?;
    let mut run = Run::new(config).await?;
    tracing::info!(
        scenario = run.config.scenario.name(),
        run = %run.run_id,
        tenant = %run.tenant,
        shard = run.config.shard,
        shards = run.config.shards,
        "bench run starting"
    );
    let result = match run.config.scenario {
        Scenario::Idle => idle::run(&mut run).await,
        Scenario::Broadcast | Scenario::Telemetry | Scenario::Sweep => {
            broadcast::run(&mut run).await
        }
        Scenario::Churn => churn::run(&mut run).await,
        Scenario::Storm => storm::run(&mut run).await,
        Scenario::Events => events::run(&mut run).await,
    };
    if run.config.is_leader() {
        crate::publisher::purge_state(&run.nats, &run.tenant).await;
    }
    result?;
    Ok(run.into_report())
}

/// One process's part of a run.
pub struct Run {
    pub config: BenchConfig,
    pub run_id: String,
    /// The run's tenant; spread tenants are `<tenant>-<i>`.
    pub tenant: String,
    pub targets: Vec<Arc<Target>>,
    pub watched: Vec<Watched>,
    pub nats: async_nats::Client,
    pub coord: Coordinator,
    pub http: reqwest::Client,
    pub report: Report,
    pub shared: Option<Arc<Shared>>,
    bench_cpu_at_start: f64,
}

fn own_cpu() -> f64 {
    crate::probe::proc_sample(std::process::id()).map_or(0.0, |s| s.cpu_seconds)
}

impl Run {
    async fn new(config: BenchConfig) -> Result<Run, BenchError> {
        let run_id = config
            .run_id
            .clone()
            .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
        let tenant = format!("{}-{run_id}", config.tenant_prefix);
        pulse_proto::validate_id(&format!("{tenant}-{}", config.tenants))
            .map_err(|e| BenchError::Tenant(tenant.clone(), e.to_string()))?;
        let targets = (config.gateways.iter().enumerate())
            .map(|(i, g)| Target::parse(g).map(|t| Arc::new(t.with_ops(config.gateway_ops.get(i)))))
            .collect::<Result<Vec<_>, _>>()?;
        let watched = targets
            .iter()
            .enumerate()
            .map(|(i, t)| Watched {
                metrics_url: t.metrics_url(),
                pid: config.gateway_pids.get(i).copied(),
            })
            .collect();
        let nats = pulse_common::nats::connect_once(&config.nats, "pulse-bench")
            .await
            .map_err(|e| BenchError::Nats(format!("{e:#}")))?;
        let coord = Coordinator::join(&nats, &run_id, config.shard, config.shards).await?;
        let report = Report {
            scenario: config.scenario.name().into(),
            run_id: run_id.clone(),
            shards: vec![config.shard],
            started_at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            settings: settings(&config),
            ..Default::default()
        };
        Ok(Run {
            run_id,
            tenant,
            targets,
            watched,
            nats,
            coord,
            http: reqwest::Client::new(),
            report,
            shared: None,
            bench_cpu_at_start: own_cpu(),
            config,
        })
    }

    /// Tenant of client `index` when clients are spread over `--tenants`.
    pub fn spread_tenant(&self, index: u64) -> String {
        format!("{}-{}", self.tenant, index % self.config.tenants as u64)
    }

    /// One token per tenant in `tenants`.
    pub fn tokens(&self, tenants: &[String]) -> Result<Vec<Arc<str>>, BenchError> {
        tenants
            .iter()
            .map(|t| {
                token::mint(&self.config.jwt_secret, t, TOKEN_TTL_SECONDS)
                    .map(Arc::from)
                    .map_err(BenchError::from)
            })
            .collect()
    }

    pub fn dial(&self) -> Dial {
        Dial {
            spread_sources: self.config.spread_sources,
            read_buffer_bytes: self.config.read_buffer_bytes,
            connect_timeout: self.config.connect_timeout(),
            protocol: self.config.protocol,
            tenant: Arc::from(self.tenant.as_str()),
            failover: if self.config.scenario == Scenario::Events {
                self.targets.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// This shard's clients: spread over the gateways in turn, over the tenants when
    /// `spread` (else all on the run's tenant), each holding `devices(index)`.
    pub fn plans(
        &self,
        spread: bool,
        devices: impl Fn(u64) -> Vec<u32>,
    ) -> Result<Vec<ClientPlan>, BenchError> {
        let total = self.config.connections as u64;
        let first = self.config.first_index(total);
        let count = self.config.share(total);
        let tenants: Vec<String> = if spread {
            (0..self.config.tenants as u64)
                .map(|i| self.spread_tenant(i))
                .collect()
        } else {
            vec![self.tenant.clone()]
        };
        let tokens = self.tokens(&tenants)?;
        Ok((first..first + count)
            .map(|index| ClientPlan {
                index,
                target: self.targets[(index % self.targets.len() as u64) as usize].clone(),
                token: tokens[(index % tokens.len() as u64) as usize].clone(),
                devices: devices(index),
                topic: None,
            })
            .collect())
    }

    /// How long a shard waits for the others at a phase: enough for everyone to connect and
    /// for the leader to publish every stage; a shard that died is noticed after this.
    pub fn phase_timeout(&self) -> Duration {
        let c = &self.config;
        let ramp = if c.connect_rate > 0.0 {
            c.connections as f64 / c.connect_rate
        } else {
            0.0
        };
        let stages = c.sweep_rates.len().max(1) as f64;
        c.connect_timeout() * 3
            + c.grace() * c.sweep_rates.len().max(1) as u32
            + Duration::from_secs_f64(ramp + c.seconds * stages + c.cycles as f64 / 1000.0)
            + Duration::from_secs(60)
    }

    pub async fn reading(&self) -> Reading {
        Reading::take(&self.http, &self.watched).await
    }

    /// The phases every population scenario starts with: baseline, ramp, connected. Returns
    /// the population, connected and measured.
    pub async fn populate(
        &mut self,
        plans: Vec<ClientPlan>,
        shared: Arc<Shared>,
    ) -> Result<Population, BenchError> {
        let before: Reading = {
            let http = self.http.clone();
            let watched = self.watched.clone();
            self.coord
                .sync("start", self.phase_timeout(), || async move {
                    Reading::take(&http, &watched).await
                })
                .await?
        };
        self.shared = Some(shared.clone());
        let rate = self.config.connect_rate / self.config.shards as f64;
        let population = Population::ramp(
            plans,
            rate,
            self.config.connect_concurrency,
            self.dial(),
            shared,
        );
        let within = self.config.connect_timeout() * 2
            + Duration::from_secs_f64(if rate > 0.0 {
                population.planned as f64 / rate
            } else {
                0.0
            })
            + Duration::from_secs(600);
        population.settled(within).await;
        tracing::info!(
            established = population.shared.established.load(Ordering::Relaxed),
            failed = population.shared.failed.load(Ordering::Relaxed),
            seconds = population.setup_seconds(),
            "clients connected"
        );
        let after: Reading = {
            let http = self.http.clone();
            let watched = self.watched.clone();
            self.coord
                .sync("connected", self.phase_timeout(), || async move {
                    // Let the gateways finish what the last setups started.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Reading::take(&http, &watched).await
                })
                .await?
        };
        if self.config.is_leader() {
            self.report.gateway = Some(GatewayCost {
                pids: self.config.gateway_pids.clone(),
                rss_before_bytes: before.rss_bytes(),
                rss_connected_bytes: after.rss_bytes(),
                rss_per_connection_bytes: None,
                connect_cpu_seconds: after
                    .cpu_seconds()
                    .zip(before.cpu_seconds())
                    .map(|(a, b)| a - b),
                connected: after.metrics.iter().flatten().copied().reduce(|mut a, b| {
                    a.connections += b.connections;
                    a.subscriptions += b.subscriptions;
                    a.nats_subscriptions += b.nats_subscriptions;
                    a
                }),
            });
        }
        Ok(population)
    }

    /// Fills the connection figures from a finished population.
    pub fn connect_stats(
        &self,
        shared: &Shared,
        planned: u64,
        setup_seconds: f64,
        held: u64,
    ) -> ConnectStats {
        ConnectStats {
            attempted: planned,
            established: shared.established.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            held,
            setup_seconds,
            per_second: 0.0,
            setup_latency: shared.setup.summary(),
        }
    }

    fn into_report(mut self) -> Report {
        if let Some(shared) = &self.shared {
            for (kind, n) in shared.errors.counts() {
                *self.report.errors.entry(kind).or_default() += n;
            }
            self.report.error_samples.extend(shared.errors.samples());
        }
        self.report.bench_cpu_seconds = own_cpu() - self.bench_cpu_at_start;
        self.report.finish();
        self.report
    }
}

fn settings(c: &BenchConfig) -> serde_json::Value {
    let common = serde_json::json!({
        "gateways": c.gateways,
        "connections": c.connections,
        "connect_rate": c.connect_rate,
        "connect_concurrency": c.connect_concurrency,
        "shards": c.shards,
        "spread_sources": c.spread_sources,
        "read_buffer_bytes": c.read_buffer_bytes,
        "payload_bytes": c.payload_bytes,
    });
    let specific = match c.scenario {
        Scenario::Idle | Scenario::Storm => {
            serde_json::json!({"tenants": c.tenants, "seconds": c.seconds})
        }
        Scenario::Broadcast => {
            serde_json::json!({"msgs_per_second": c.msgs_per_second, "seconds": c.seconds})
        }
        Scenario::Sweep => serde_json::json!({
            "sweep_rates": c.sweep_rates, "seconds": c.seconds,
            "sweep_p99_limit_ms": c.sweep_p99_limit_ms,
        }),
        Scenario::Telemetry => serde_json::json!({
            "devices": c.devices, "per_client": c.per_client, "hz": c.hz, "seconds": c.seconds,
        }),
        Scenario::Churn => serde_json::json!({
            "cycles": c.cycles, "churn_concurrency": c.churn_concurrency, "tenants": c.tenants,
        }),
        Scenario::Events => serde_json::json!({
            "events_per_second": c.events_per_second, "seconds": c.seconds,
            "db_connections": c.db_connections, "kill_pid": c.kill_pid,
            "restart_pids": c.restart_pids,
            "kill_after_seconds": (c.kill_pid.is_some() || !c.restart_pids.is_empty())
                .then(|| c.kill_after().as_secs_f64()),
            "poller_metrics": c.poller_metrics,
        }),
    };
    let mut all = common;
    if let (Some(a), Some(b)) = (all.as_object_mut(), specific.as_object()) {
        a.extend(b.clone());
    }
    all
}
