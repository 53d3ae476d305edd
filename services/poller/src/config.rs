//! The poller's configuration: flags with environment fallbacks. Bounds are checked as the
//! values are parsed (`pulse_common::config_value`); what relates several settings is checked
//! by [`PollerConfig::validate`] at start.

use std::net::SocketAddr;
use std::time::Duration;

use pulse_common::config_value::{duration, millis, ms, number, secs};

const DAY: u64 = 86_400;

/// Where the ops endpoints listen unless `PULSE_POLLER_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9090";

/// Where the poller reads, where it publishes, and how often.
#[derive(clap::Args, Debug, Clone)]
pub struct PollerConfig {
    // Not `pulse_db::DatabaseArgs` flattened: `pulse-poller` tells whether it was given this
    // configuration from whether this struct's group has an argument, and clap leaves the
    // group of a struct with a flattened field (`nats`) empty. So `DATABASE_URL`, which a
    // configuration always has, joins the group by name, and must be declared here to do so.
    /// PostgreSQL connection string.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        group = "PollerConfig"
    )]
    pub database_url: String,

    /// Where NATS is and how to reach it (`NATS_URL`, `PULSE_NATS_CA_FILE`, ...).
    #[command(flatten)]
    pub nats: pulse_common::nats::NatsArgs,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "PULSE_POLLER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Safety-net interval: every tenant's alerts and fleet are re-read this often even
    /// without a change notification.
    #[arg(long = "poll-seconds", env = "PULSE_POLL_SECONDS", default_value = "5",
          value_parser = duration(secs(1), secs(3600)))]
    pub poll_interval: Duration,

    /// A device whose newest reading is older than this is STALE.
    #[arg(long = "stale-after-seconds", env = "PULSE_STALE_AFTER_SECONDS", default_value = "60",
          value_parser = duration(secs(1), secs(30 * DAY)))]
    pub stale_after: Duration,

    /// A device whose newest reading is older than this (or that never reported) is OFFLINE.
    #[arg(long = "offline-after-seconds", env = "PULSE_OFFLINE_AFTER_SECONDS", default_value = "600",
          value_parser = duration(secs(2), secs(365 * DAY)))]
    pub offline_after: Duration,

    /// How often new telemetry rows are read.
    #[arg(long = "telemetry-poll-ms", env = "PULSE_TELEMETRY_POLL_MS", default_value = "1000",
          value_parser = millis(ms(10), secs(60)))]
    pub telemetry_interval: Duration,

    /// Most alerts listed in one alerts snapshot (newest first); `total_open` counts them all.
    #[arg(long, env = "PULSE_ALERTS_CAP", default_value = "100",
          value_parser = number::<u32>(1..=10_000))]
    pub alerts_cap: u32,

    /// Most devices listed in one fleet snapshot (least healthy first); counts cover them all.
    #[arg(long, env = "PULSE_FLEET_DEVICES_CAP", default_value = "1000",
          value_parser = number::<u32>(1..=100_000))]
    pub fleet_devices_cap: u32,

    /// A fleet snapshot whose only change is newer `last_seen_at` values is republished at
    /// most this often.
    #[arg(long = "fleet-refresh-seconds", env = "PULSE_FLEET_REFRESH_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(DAY)))]
    pub fleet_refresh: Duration,

    /// Change notifications arriving within this window are read together.
    #[arg(long = "debounce-ms", env = "PULSE_DEBOUNCE_MS", default_value = "10",
          value_parser = millis(Duration::ZERO, secs(10)))]
    pub debounce: Duration,

    /// A LISTEN connection quiet this long is asked whether it is still there (and, with no
    /// answer within 5 s, replaced, with a resync): a connection dropped without a word by a
    /// NAT or load balancer would otherwise wait for notifications for ever.
    #[arg(long = "listen-check-seconds", env = "PULSE_LISTEN_CHECK_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(DAY)))]
    pub listen_check: Duration,

    /// How often a standby poller tries to become active.
    #[arg(long = "standby-retry-ms", env = "PULSE_STANDBY_RETRY_MS", default_value = "1000",
          value_parser = millis(ms(50), secs(60)))]
    pub standby_retry: Duration,

    /// JetStream replicas of the Pulse streams and the device bucket (3 on a three-node NATS
    /// cluster).
    #[arg(long, env = "PULSE_STREAM_REPLICAS", default_value = "1",
          value_parser = number::<usize>(1..=5))]
    pub stream_replicas: usize,

    /// How long an event is kept, in the events stream and in the database outbox (with its
    /// idempotency key): `24h`, `90m`, or whole seconds. Default 24h.
    #[arg(long, env = "PULSE_EVENTS_MAX_AGE",
          value_parser = duration(secs(1), secs(365 * DAY)))]
    pub events_max_age: Option<Duration>,

    /// The older name of `PULSE_EVENTS_MAX_AGE`, in seconds; still read when that is unset.
    #[arg(long, env = "PULSE_EVENTS_MAX_AGE_SECONDS",
          value_parser = number::<u64>(1..=365 * DAY))]
    pub events_max_age_seconds: Option<u64>,

    /// Events kept per topic of a tenant (a stream subject): a busy topic evicts only its own
    /// oldest events, never another tenant's or topic's.
    #[arg(long, env = "PULSE_EVENTS_MAX_PER_TOPIC", default_value = "10000",
          value_parser = number::<i64>(1..=10_000_000))]
    pub events_max_per_topic: i64,

    /// Size bound of the whole events stream, in bytes: a disk guard. When it is reached the
    /// oldest events of any topic go first, so size it above topics × the per-topic cap.
    #[arg(long, env = "PULSE_EVENTS_MAX_BYTES", default_value = "1073741824",
          value_parser = number::<i64>(1024 * 1024..=1 << 40))]
    pub events_max_bytes: i64,

    /// PostgreSQL connections the poller may hold (plus one for leadership, one for LISTEN).
    #[arg(long, env = "PULSE_DB_POOL_SIZE", default_value = "4",
          value_parser = number::<u32>(1..=64))]
    pub db_pool_size: u32,

    /// The database role the poller works as (`SET ROLE` on every pooled connection): it
    /// reads every tenant and writes only relay marks and settings. Empty: work as the login.
    #[arg(long, env = "PULSE_POLLER_DB_ROLE", default_value = pulse_db::roles::POLLER)]
    pub db_role: String,
}

/// A configuration value that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    DatabaseUrl(#[from] pulse_db::InvalidDatabaseUrl),
    #[error("{first} and {second} are both set and disagree; set only {first}")]
    Conflict {
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "PULSE_OFFLINE_AFTER_SECONDS ({}) must be greater than PULSE_STALE_AFTER_SECONDS ({})",
        pulse_common::duration::format(*offline),
        pulse_common::duration::format(*stale)
    )]
    Thresholds { stale: Duration, offline: Duration },
}

impl PollerConfig {
    /// What the poller applies to its pushes, which the web service and the triggers read
    /// back from `pulse_settings` so that they agree.
    pub fn applied(&self) -> pulse_db::settings::Applied {
        pulse_db::settings::Applied {
            thresholds: pulse_proto::fleet::Thresholds {
                stale_after: self.stale_after,
                offline_after: self.offline_after,
            },
            fleet_devices_cap: self.fleet_devices_cap as usize,
        }
    }

    /// Checks every value; the error names the variable to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        pulse_db::check_url(&self.database_url)?;
        if self.offline_after <= self.stale_after {
            return Err(ConfigError::Thresholds {
                stale: self.stale_after,
                offline: self.offline_after,
            });
        }
        if let (Some(age), Some(seconds)) = (self.events_max_age, self.events_max_age_seconds)
            && age != Duration::from_secs(seconds)
        {
            return Err(ConfigError::Conflict {
                first: "PULSE_EVENTS_MAX_AGE",
                second: "PULSE_EVENTS_MAX_AGE_SECONDS",
            });
        }
        Ok(())
    }

    /// How long events are kept (`PULSE_EVENTS_MAX_AGE`, else the older seconds variable).
    pub fn events_max_age(&self) -> Duration {
        self.events_max_age
            .or(self.events_max_age_seconds.map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: PollerConfig,
    }

    fn parse(args: &[&str]) -> PollerConfig {
        let mut argv = vec!["pulse-poller", "--database-url", "postgres://u@h/db"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = parse(&[]);
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(c.stale_after, Duration::from_secs(60));
        assert_eq!(c.offline_after, Duration::from_secs(600));
        assert_eq!(c.telemetry_interval, Duration::from_millis(1000));
        assert_eq!(c.alerts_cap, 100);
        c.validate().unwrap();
    }

    #[test]
    fn the_run_configuration_is_seen_from_the_database_url_alone() {
        // `pulse-poller` with no subcommand reads an optional `PollerConfig`.
        #[derive(clap::Parser)]
        struct Optional {
            #[command(flatten)]
            run: Option<PollerConfig>,
        }
        let cli = Optional::try_parse_from(["pulse-poller", "--database-url", "postgres://u@h/db"])
            .unwrap();
        assert!(cli.run.is_some());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = parse(&[
            "--stale-after-seconds",
            "600",
            "--offline-after-seconds",
            "60",
        ])
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().contains("PULSE_OFFLINE_AFTER_SECONDS"),
            "{err}"
        );
        let err = Cli::try_parse_from([
            "p",
            "--database-url",
            "postgres://u@h/db",
            "--poll-seconds",
            "0",
        ])
        .err()
        .expect("a poll interval of 0 parses");
        assert!(
            err.to_string()
                .contains("PULSE_POLL_SECONDS must be between 1s and 1h"),
            "{err}"
        );
        let mut c = parse(&[]);
        c.database_url = "mysql://nope".into();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let shown = pulse_test_support::secrets_shown_in_help::<PollerConfig>();
        assert!(shown.is_empty(), "--help prints the values of {shown:?}");
    }
}
