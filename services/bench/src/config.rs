//! What a bench run does: the scenario, its size, where the gateways and NATS are. Every flag
//! of the load shapes shared by several scenarios has a `PULSE_BENCH_*` environment variable
//! (or the variable the services use); the flags of the events scenario alone are
//! command-line flags, except `DATABASE_URL`. Bounds are checked as the values are parsed
//! (`pulse_common::config_value`); what relates several settings is checked by
//! [`BenchConfig::validate`].

use std::path::PathBuf;
use std::time::Duration;

use pulse_common::config_value::{duration, millis, number, positive, secs};

/// The load shapes `pulse-bench` can drive.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connect `--connections` clients (each subscribes to its tenant's alerts) and hold them.
    Idle,
    /// Every client subscribes to one tenant's alerts; a publisher sends `--msgs-per-second`.
    Broadcast,
    /// Each client subscribes to `--per-client` of `--devices` device subjects; every device
    /// publishes at `--hz`.
    Telemetry,
    /// `--cycles` connect / subscribe / close cycles from `--churn-concurrency` workers.
    Churn,
    /// Hold `--connections`, then cut them all at once and reconnect them all at once.
    Storm,
    /// `broadcast` in stages of increasing rate (`--sweep-rates`) until p99 passes
    /// `--sweep-p99-limit-ms` or more than a tenth of the messages are lost.
    Sweep,
    /// Every client subscribes to one events topic, spread over the gateways; events go in
    /// through the PostgreSQL outbox at `--events-per-second`; mid-run `--kill-pid` is killed,
    /// or the `--restart-pid` gateways are restarted one after another, and their clients
    /// resume on another gateway with `since`.
    Events,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Broadcast => "broadcast",
            Scenario::Telemetry => "telemetry",
            Scenario::Churn => "churn",
            Scenario::Storm => "storm",
            Scenario::Sweep => "sweep",
            Scenario::Events => "events",
        }
    }
}

/// What the clients speak to what they drive.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Pulse's WebSocket protocol: a gateway, or a peer speaking it.
    Pulse,
    /// NATS's own protocol over WebSocket: a nats-server with `websocket` enabled, the peer the
    /// gateway is measured against. `--gateway` is its WebSocket URL, `--nats-url` the same
    /// server (the publisher's), `--gateway-pid` its process. broadcast, telemetry and sweep.
    Nats,
}

/// One bench run (or one shard of a run spread over several processes).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchConfig {
    /// The load shape.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Gateway WebSocket URL(s), comma-separated; connections are spread over them in turn.
    #[arg(
        long = "gateway",
        env = "PULSE_BENCH_GATEWAYS",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8081/api/v2/ws"
    )]
    pub gateways: Vec<String>,

    /// Gateway process id(s), in the order of `--gateway`: its CPU seconds and RSS are read
    /// from /proc/<pid>.
    #[arg(
        long = "gateway-pid",
        env = "PULSE_BENCH_GATEWAY_PIDS",
        value_delimiter = ','
    )]
    pub gateway_pids: Vec<u32>,

    /// Where each gateway of `--gateway` serves `/metrics` and `/readyz` (`host:port`), in
    /// its order, for gateways whose `PULSE_GATEWAY_OPS_ADDR` moved them off the WebSocket
    /// port; unset, they are read on the WebSocket's host and port.
    #[arg(
        long = "gateway-ops",
        env = "PULSE_BENCH_GATEWAY_OPS",
        value_delimiter = ','
    )]
    pub gateway_ops: Vec<String>,

    #[command(flatten)]
    pub nats: pulse_common::nats::NatsArgs,

    /// HS256 secret the gateways verify tokens with; the bench mints its own tokens.
    #[arg(
        long,
        env = "PULSE_JWT_SECRET",
        value_name = "PULSE_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: String,

    /// Clients (connections) in idle, broadcast, telemetry, storm, sweep and events.
    #[arg(long, env = "PULSE_BENCH_CONNECTIONS", default_value_t = 1000,
          value_parser = number::<usize>(1..=10_000_000))]
    pub connections: usize,

    /// New connections per second while ramping up; 0: as fast as `--connect-concurrency`
    /// allows.
    #[arg(long, env = "PULSE_BENCH_CONNECT_RATE", default_value_t = 0.0)]
    pub connect_rate: f64,

    /// Connection setups (TCP, upgrade, subscribe ack) in flight at once while ramping.
    #[arg(long, env = "PULSE_BENCH_CONNECT_CONCURRENCY", default_value_t = 128,
          value_parser = number::<usize>(1..=1_000_000))]
    pub connect_concurrency: usize,

    /// Tenants the clients of idle, churn and storm are spread over (broadcast and telemetry
    /// use one tenant).
    #[arg(long, env = "PULSE_BENCH_TENANTS", default_value_t = 10,
          value_parser = number::<usize>(1..=1_000_000))]
    pub tenants: usize,

    /// How long to hold (idle, storm) or publish (broadcast, telemetry, each sweep stage,
    /// events).
    #[arg(long, env = "PULSE_BENCH_SECONDS", default_value_t = 10.0,
          value_parser = positive())]
    pub seconds: f64,

    /// broadcast, sweep: messages per second on the tenant's alerts subject.
    #[arg(long, env = "PULSE_BENCH_MSGS_PER_SECOND", default_value_t = 10.0,
          value_parser = positive())]
    pub msgs_per_second: f64,

    /// sweep: the publish rates tried in turn, messages per second.
    #[arg(long, env = "PULSE_BENCH_SWEEP_RATES", value_delimiter = ',',
          default_value = "10,12,14,16,18,20,25,30,40,60",
          value_parser = positive())]
    pub sweep_rates: Vec<f64>,

    /// sweep: stop after the first stage whose p99 exceeds this (or that lost more than a
    /// tenth of its messages).
    #[arg(long, env = "PULSE_BENCH_SWEEP_P99_LIMIT_MS", default_value_t = 100.0)]
    pub sweep_p99_limit_ms: f64,

    /// telemetry: devices publishing.
    #[arg(long, env = "PULSE_BENCH_DEVICES", default_value_t = 1000,
          value_parser = number::<usize>(1..=10_000_000))]
    pub devices: usize,

    /// telemetry: devices each client subscribes to.
    #[arg(long, env = "PULSE_BENCH_PER_CLIENT", default_value_t = 5,
          value_parser = number::<usize>(1..=10_000_000))]
    pub per_client: usize,

    /// telemetry: readings per second per device.
    #[arg(long, env = "PULSE_BENCH_HZ", default_value_t = 1.0,
          value_parser = positive())]
    pub hz: f64,

    /// churn: connect / subscribe / close cycles in all.
    #[arg(long, env = "PULSE_BENCH_CYCLES", default_value_t = 100_000,
          value_parser = number::<u64>(1..=1_000_000_000))]
    pub cycles: u64,

    /// churn: cycles running at once.
    #[arg(long, env = "PULSE_BENCH_CHURN_CONCURRENCY", default_value_t = 64,
          value_parser = number::<usize>(1..=1_000_000))]
    pub churn_concurrency: usize,

    /// events: PostgreSQL, where the bench writes events into the outbox (the poller relays
    /// them). The run's tenant is created there and removed afterwards.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// events: events per second written with `pulse_emit_event`.
    #[arg(long, default_value_t = 200.0, value_parser = positive())]
    pub events_per_second: f64,

    /// events: PostgreSQL connections writing events, each with one insert in flight.
    #[arg(long, default_value_t = 4, value_parser = number::<u32>(1..=1000))]
    pub db_connections: u32,

    /// events: a gateway process to kill (SIGKILL) while events flow; its clients resume on
    /// the next gateway of `--gateway`. Unset: nothing is killed.
    #[arg(long)]
    pub kill_pid: Option<u32>,

    /// events: gateway processes to restart one after another while events flow (a rolling
    /// restart), each listed in `--gateway-pid` too. Each gets SIGTERM and drains (its clients
    /// are closed with 1012 and resume on the next gateway of `--gateway`); the next one is
    /// signalled once the previous has exited and its address answers `/readyz` again. The
    /// bench starts nothing: whatever supervises the gateways restarts them.
    #[arg(
        long = "restart-pid",
        value_delimiter = ',',
        conflicts_with = "kill_pid"
    )]
    pub restart_pids: Vec<u32>,

    /// events: seconds after the first insert at which `--kill-pid` is killed, or the first
    /// `--restart-pid` is sent SIGTERM; default half of `--seconds`.
    #[arg(long)]
    pub kill_after_seconds: Option<f64>,

    /// events: the poller's `/metrics` URL; its `pulse_poller_publishes_total{kind="events"}`
    /// is read before and after, as a second count of the events relayed.
    #[arg(long)]
    pub poller_metrics: Option<String>,

    /// Approximate size of a published message, in bytes.
    #[arg(long, env = "PULSE_BENCH_PAYLOAD_BYTES", default_value_t = 300)]
    pub payload_bytes: usize,

    /// After the last publish, how long to wait for stragglers before counting losses.
    #[arg(long = "grace-ms", value_name = "GRACE_MS", env = "PULSE_BENCH_GRACE_MS", default_value = "2000",
          value_parser = millis(Duration::ZERO, secs(3600)))]
    grace: Duration,

    /// A connection setup or reconnect that takes longer than this counts as failed.
    #[arg(long = "connect-timeout-seconds", value_name = "CONNECT_TIMEOUT_SECONDS",
          env = "PULSE_BENCH_CONNECT_TIMEOUT_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(3600)))]
    connect_timeout: Duration,

    /// Bind each client socket to its own address in 127.0.0.0/8 before connecting, so tens
    /// of thousands of connections fit the ephemeral port range. Needs loopback gateways.
    #[arg(long, env = "PULSE_BENCH_SPREAD_SOURCES", default_value_t = true, action = clap::ArgAction::Set)]
    pub spread_sources: bool,

    /// Client-side WebSocket read buffer per connection, in bytes (tungstenite zero-fills it
    /// before every read, so larger costs CPU per frame).
    #[arg(long, env = "PULSE_BENCH_READ_BUFFER_BYTES", default_value_t = 2048,
          value_parser = number::<usize>(1..=16 * 1024 * 1024))]
    pub read_buffer_bytes: usize,

    /// What the clients speak: Pulse's protocol, or NATS's own (to measure nats-server's
    /// WebSocket fan-out under the same load).
    #[arg(
        long,
        env = "PULSE_BENCH_PROTOCOL",
        value_enum,
        default_value = "pulse"
    )]
    pub protocol: Protocol,

    /// Tenant id prefix; each run adds a random suffix, so no other data mixes in.
    #[arg(long, env = "PULSE_BENCH_TENANT_PREFIX", default_value = "bench")]
    pub tenant_prefix: String,

    /// Write the report as JSON here (for `pulse-bench merge`).
    #[arg(long, env = "PULSE_BENCH_JSON")]
    pub json: Option<PathBuf>,

    /// Processes to spread the clients over (each process opens connections/processes);
    /// 0: one per 15,000 connections.
    #[arg(long, env = "PULSE_BENCH_PROCESSES", default_value_t = 1)]
    pub processes: usize,

    /// Run id shared by the shards of one run; random when unset.
    #[arg(long, env = "PULSE_BENCH_RUN_ID")]
    pub run_id: Option<String>,

    /// This process's shard, 0-based; shard 0 publishes, measures the gateway and paces the
    /// others.
    #[arg(long, default_value_t = 0)]
    pub shard: usize,

    /// Shards (processes) in the run.
    #[arg(long, default_value_t = 1, value_parser = number::<usize>(1..=10_000))]
    pub shards: usize,
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--gateway: at least one URL is needed")]
    NoGateway,
    #[error("--gateway {0:?} must be a ws:// URL")]
    GatewayUrl(String),
    #[error("--shard {shard} must be below --shards {shards}")]
    Shard { shard: usize, shards: usize },
    #[error("--per-client ({per_client}) cannot exceed --devices ({devices})")]
    PerClient { per_client: usize, devices: usize },
    #[error("--gateway-pid lists {pids} pids for {gateways} gateways")]
    Pids { pids: usize, gateways: usize },
    #[error("--gateway-ops lists {ops} addresses for {gateways} gateways")]
    OpsAddrs { ops: usize, gateways: usize },
    #[error("PULSE_JWT_SECRET must be at least 32 bytes")]
    WeakSecret,
    #[error("events: --database-url (DATABASE_URL) is needed to write events")]
    NoDatabase,
    #[error("--protocol nats drives broadcast, telemetry and sweep only, not {0}")]
    Protocol(&'static str),
    #[error("events: --kill-pid needs a second --gateway for the clients to resume on")]
    NowhereToResume,
    #[error("events: --restart-pid needs a second --gateway for the clients to resume on")]
    NowhereToDrain,
    #[error("events: --restart-pid {0} is not one of --gateway-pid, which gives its address")]
    RestartPid(u32),
    #[error("events: --kill-after-seconds ({after}) must be within --seconds ({seconds})")]
    KillAfter { after: f64, seconds: f64 },
}

impl BenchConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gateways.is_empty() {
            return Err(ConfigError::NoGateway);
        }
        if let Some(bad) = self.gateways.iter().find(|g| !g.starts_with("ws://")) {
            return Err(ConfigError::GatewayUrl(bad.clone()));
        }
        if !self.gateway_pids.is_empty() && self.gateway_pids.len() != self.gateways.len() {
            return Err(ConfigError::Pids {
                pids: self.gateway_pids.len(),
                gateways: self.gateways.len(),
            });
        }
        if !self.gateway_ops.is_empty() && self.gateway_ops.len() != self.gateways.len() {
            return Err(ConfigError::OpsAddrs {
                ops: self.gateway_ops.len(),
                gateways: self.gateways.len(),
            });
        }
        if self.jwt_secret.len() < 32 {
            return Err(ConfigError::WeakSecret);
        }
        if self.shard >= self.shards {
            return Err(ConfigError::Shard {
                shard: self.shard,
                shards: self.shards,
            });
        }
        if self.scenario == Scenario::Telemetry && self.per_client > self.devices {
            return Err(ConfigError::PerClient {
                per_client: self.per_client,
                devices: self.devices,
            });
        }
        if self.protocol == Protocol::Nats
            && !matches!(
                self.scenario,
                Scenario::Broadcast | Scenario::Telemetry | Scenario::Sweep
            )
        {
            return Err(ConfigError::Protocol(self.scenario.name()));
        }
        if self.scenario == Scenario::Events {
            if self.database_url.is_none() {
                return Err(ConfigError::NoDatabase);
            }
            if self.kill_pid.is_some() && self.gateways.len() < 2 {
                return Err(ConfigError::NowhereToResume);
            }
            if !self.restart_pids.is_empty() && self.gateways.len() < 2 {
                return Err(ConfigError::NowhereToDrain);
            }
            if let Some(pid) = self
                .restart_pids
                .iter()
                .find(|pid| !self.gateway_pids.contains(pid))
            {
                return Err(ConfigError::RestartPid(*pid));
            }
            let after = self.kill_after().as_secs_f64();
            if !(after > 0.0 && after < self.seconds) {
                return Err(ConfigError::KillAfter {
                    after,
                    seconds: self.seconds,
                });
            }
        }
        Ok(())
    }

    /// events: when `--kill-pid` is killed (or the first `--restart-pid` signalled), counted
    /// from the first insert.
    pub fn kill_after(&self) -> Duration {
        let seconds = self.kill_after_seconds.unwrap_or(self.seconds / 2.0);
        Duration::try_from_secs_f64(seconds).unwrap_or_default()
    }

    /// Whether this process leads the run: publishes, measures the gateways, paces the others.
    pub fn is_leader(&self) -> bool {
        self.shard == 0
    }

    /// This shard's share of `total`, spread so the shards add up to it.
    pub fn share(&self, total: u64) -> u64 {
        let shards = self.shards as u64;
        let shard = self.shard as u64;
        total / shards + u64::from(shard < total % shards)
    }

    /// Global index of this shard's first client among `total` clients.
    pub fn first_index(&self, total: u64) -> u64 {
        let shards = self.shards as u64;
        (0..self.shard as u64)
            .map(|s| total / shards + u64::from(s < total % shards))
            .sum()
    }

    pub fn seconds(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Processes to use: `--processes`, or one per 15,000 connections when it is 0.
    pub fn process_count(&self) -> usize {
        match self.processes {
            0 => self.connections.div_ceil(15_000).max(1),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: BenchConfig,
    }

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes";

    fn parse(args: &[&str]) -> Result<BenchConfig, String> {
        let mut argv = vec!["pulse-bench", "broadcast", "--jwt-secret", SECRET];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|cli| cli.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.connections, 1000);
        assert_eq!(c.seconds(), Duration::from_secs(10));
        assert_eq!(c.grace(), Duration::from_millis(2000));
        assert_eq!(c.connect_timeout(), Duration::from_secs(30));
        assert_eq!(c.sweep_rates.len(), 10);
        c.validate().unwrap();
    }

    #[test]
    fn durations_read_their_unit() {
        let c = parse(&["--grace-ms", "250", "--connect-timeout-seconds", "20"]).unwrap();
        assert_eq!(c.grace(), Duration::from_millis(250));
        assert_eq!(c.connect_timeout(), Duration::from_secs(20));
        let c = parse(&["--seconds", "2.5"]).unwrap();
        assert_eq!(c.seconds(), Duration::from_millis(2500));
    }

    #[test]
    fn bounds_are_checked_as_flags_are_parsed_naming_the_setting() {
        for (flag, value, expected) in [
            (
                "--connections",
                "0",
                "PULSE_BENCH_CONNECTIONS must be between 1 and",
            ),
            (
                "--tenants",
                "0",
                "PULSE_BENCH_TENANTS must be between 1 and",
            ),
            (
                "--seconds",
                "0",
                "PULSE_BENCH_SECONDS must be a number above 0, got \"0\"",
            ),
            ("--hz", "NaN", "PULSE_BENCH_HZ must be a number above 0"),
            (
                "--sweep-rates",
                "10,0",
                "PULSE_BENCH_SWEEP_RATES must be a number above 0",
            ),
            (
                "--read-buffer-bytes",
                "0",
                "PULSE_BENCH_READ_BUFFER_BYTES must be between 1 and",
            ),
            (
                "--events-per-second",
                "0",
                "--events-per-second must be a number above 0",
            ),
            (
                "--db-connections",
                "0",
                "--db-connections must be between 1 and",
            ),
            ("--shards", "0", "--shards must be between 1 and"),
            (
                "--grace-ms",
                "2h",
                "PULSE_BENCH_GRACE_MS must be between 0s and 1h",
            ),
            (
                "--connect-timeout-seconds",
                "0",
                "PULSE_BENCH_CONNECT_TIMEOUT_SECONDS must be between 1s and 1h",
            ),
        ] {
            let message = parse(&[flag, value]).unwrap_err();
            assert!(
                message.contains(expected),
                "{flag} {value}: expected {expected:?} in {message:?}"
            );
        }
    }

    #[test]
    fn a_missing_secret_names_the_variable_to_set() {
        // Only the flag counts here, whatever the environment of the test run holds.
        let err = Cli::command()
            .mut_arg("jwt_secret", |a| a.env(None::<&str>))
            .try_get_matches_from(["pulse-bench", "broadcast"])
            .unwrap_err();
        assert!(
            err.to_string().contains("--jwt-secret <PULSE_JWT_SECRET>"),
            "{err}"
        );
    }

    #[test]
    fn settings_that_relate_are_checked_together() {
        let err = parse(&["--shard", "2", "--shards", "2"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "--shard 2 must be below --shards 2");
        let mut c = parse(&["--devices", "4", "--per-client", "5"]).unwrap();
        c.scenario = Scenario::Telemetry;
        assert!(matches!(c.validate(), Err(ConfigError::PerClient { .. })));
    }

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let shown = pulse_test_support::secrets_shown_in_help::<BenchConfig>();
        assert!(shown.is_empty(), "--help prints the values of {shown:?}");
    }
}
