//! The poller's configuration: flags with environment fallbacks, validated at start.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

/// Where the poller reads, where it publishes, and how often.
#[derive(clap::Args, Debug, Clone)]
pub struct PollerConfig {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "PULSE_POLLER_ADDR", default_value = "0.0.0.0:9090")]
    pub addr: SocketAddr,

    /// Safety-net interval: every tenant's alerts and fleet are re-read this often even
    /// without a change notification.
    #[arg(long, env = "PULSE_POLL_SECONDS", default_value_t = 5)]
    pub poll_seconds: u64,

    /// A device whose newest reading is older than this is STALE.
    #[arg(long, env = "PULSE_STALE_AFTER_SECONDS", default_value_t = 60)]
    pub stale_after_seconds: u64,

    /// A device whose newest reading is older than this (or that never reported) is OFFLINE.
    #[arg(long, env = "PULSE_OFFLINE_AFTER_SECONDS", default_value_t = 600)]
    pub offline_after_seconds: u64,

    /// How often new telemetry rows are read.
    #[arg(long, env = "PULSE_TELEMETRY_POLL_MS", default_value_t = 1000)]
    pub telemetry_poll_ms: u64,

    /// Most alerts listed in one alerts snapshot (newest first); `total_open` counts them all.
    #[arg(long, env = "PULSE_ALERTS_CAP", default_value_t = 100)]
    pub alerts_cap: u32,

    /// Most devices listed in one fleet snapshot (least healthy first); counts cover them all.
    #[arg(long, env = "PULSE_FLEET_DEVICES_CAP", default_value_t = 1000)]
    pub fleet_devices_cap: u32,

    /// A fleet snapshot whose only change is newer `last_seen_at` values is republished at
    /// most this often.
    #[arg(long, env = "PULSE_FLEET_REFRESH_SECONDS", default_value_t = 30)]
    pub fleet_refresh_seconds: u64,

    /// Change notifications arriving within this window are read together.
    #[arg(long, env = "PULSE_DEBOUNCE_MS", default_value_t = 10)]
    pub debounce_ms: u64,

    /// How often a standby poller tries to become active.
    #[arg(long, env = "PULSE_STANDBY_RETRY_MS", default_value_t = 1000)]
    pub standby_retry_ms: u64,

    /// JetStream replicas of the Pulse streams (3 on a three-node NATS cluster).
    #[arg(long, env = "PULSE_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// How long an event is kept, in the events stream and in the database outbox (with its
    /// idempotency key): `24h`, `90m`, or whole seconds. Default 24h.
    #[arg(long, env = "PULSE_EVENTS_MAX_AGE", value_parser = pulse_common::duration::parse)]
    pub events_max_age: Option<Duration>,

    /// The older name of `PULSE_EVENTS_MAX_AGE`, in seconds; still read when that is unset.
    #[arg(long, env = "PULSE_EVENTS_MAX_AGE_SECONDS")]
    pub events_max_age_seconds: Option<u64>,

    /// Events kept per topic of a tenant (a stream subject): a busy topic evicts only its own
    /// oldest events, never another tenant's or topic's.
    #[arg(long, env = "PULSE_EVENTS_MAX_PER_TOPIC", default_value_t = 10_000)]
    pub events_max_per_topic: i64,

    /// Size bound of the whole events stream, in bytes: a disk guard. When it is reached the
    /// oldest events of any topic go first, so size it above topics × the per-topic cap.
    #[arg(long, env = "PULSE_EVENTS_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub events_max_bytes: i64,

    /// PostgreSQL connections the poller may hold (plus one for leadership, one for LISTEN).
    #[arg(long, env = "PULSE_DB_POOL_SIZE", default_value_t = 4)]
    pub db_pool_size: u32,

    /// The database role the poller works as (`SET ROLE` on every pooled connection): it
    /// reads every tenant and writes only relay marks and settings. Empty: work as the login.
    #[arg(long, env = "PULSE_POLLER_DB_ROLE", default_value = pulse_db::roles::POLLER)]
    pub db_role: String,
}

/// A configuration value that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    DatabaseUrl(String),
    #[error("NATS_URL is empty")]
    NatsUrl,
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("{name} must be between {min} and {max}, got {value}")]
    Duration {
        name: &'static str,
        value: String,
        min: &'static str,
        max: &'static str,
    },
    #[error("{first} and {second} are both set and disagree; set only {first}")]
    Conflict {
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "PULSE_OFFLINE_AFTER_SECONDS ({offline}) must be greater than PULSE_STALE_AFTER_SECONDS ({stale})"
    )]
    Thresholds { stale: u64, offline: u64 },
}

fn range(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

impl PollerConfig {
    /// Checks every value; the error names the variable to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::DatabaseUrl(
                "expected postgres://user@host:port/database".into(),
            ));
        }
        PgConnectOptions::from_str(&self.database_url)
            .map_err(|e| ConfigError::DatabaseUrl(e.to_string()))?;
        if self.nats_url.trim().is_empty() {
            return Err(ConfigError::NatsUrl);
        }
        range("PULSE_POLL_SECONDS", self.poll_seconds, 1, 3600)?;
        range(
            "PULSE_STALE_AFTER_SECONDS",
            self.stale_after_seconds,
            1,
            86_400 * 30,
        )?;
        range(
            "PULSE_OFFLINE_AFTER_SECONDS",
            self.offline_after_seconds,
            2,
            86_400 * 365,
        )?;
        if self.offline_after_seconds <= self.stale_after_seconds {
            return Err(ConfigError::Thresholds {
                stale: self.stale_after_seconds,
                offline: self.offline_after_seconds,
            });
        }
        range(
            "PULSE_TELEMETRY_POLL_MS",
            self.telemetry_poll_ms,
            10,
            60_000,
        )?;
        range("PULSE_ALERTS_CAP", self.alerts_cap.into(), 1, 10_000)?;
        range(
            "PULSE_FLEET_DEVICES_CAP",
            self.fleet_devices_cap.into(),
            1,
            100_000,
        )?;
        range(
            "PULSE_FLEET_REFRESH_SECONDS",
            self.fleet_refresh_seconds,
            1,
            86_400,
        )?;
        range("PULSE_DEBOUNCE_MS", self.debounce_ms, 0, 10_000)?;
        range("PULSE_STANDBY_RETRY_MS", self.standby_retry_ms, 50, 60_000)?;
        range("PULSE_STREAM_REPLICAS", self.stream_replicas as u64, 1, 5)?;
        if let (Some(age), Some(seconds)) = (self.events_max_age, self.events_max_age_seconds)
            && age != Duration::from_secs(seconds)
        {
            return Err(ConfigError::Conflict {
                first: "PULSE_EVENTS_MAX_AGE",
                second: "PULSE_EVENTS_MAX_AGE_SECONDS",
            });
        }
        let age = self.events_max_age();
        if age < Duration::from_secs(1) || age > Duration::from_secs(86_400 * 365) {
            return Err(ConfigError::Duration {
                name: "PULSE_EVENTS_MAX_AGE",
                value: pulse_common::duration::format(age),
                min: "1s",
                max: "365days",
            });
        }
        range(
            "PULSE_EVENTS_MAX_PER_TOPIC",
            self.events_max_per_topic.max(0) as u64,
            1,
            10_000_000,
        )?;
        range(
            "PULSE_EVENTS_MAX_BYTES",
            self.events_max_bytes.max(0) as u64,
            1024 * 1024,
            1 << 40,
        )?;
        range("PULSE_DB_POOL_SIZE", self.db_pool_size.into(), 1, 64)?;
        Ok(())
    }

    /// How long events are kept (`PULSE_EVENTS_MAX_AGE`, else the older seconds variable).
    pub fn events_max_age(&self) -> Duration {
        self.events_max_age
            .or(self.events_max_age_seconds.map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(86_400))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }

    pub fn telemetry_interval(&self) -> Duration {
        Duration::from_millis(self.telemetry_poll_ms)
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }

    pub fn standby_retry(&self) -> Duration {
        Duration::from_millis(self.standby_retry_ms)
    }

    pub fn fleet_refresh(&self) -> Duration {
        Duration::from_secs(self.fleet_refresh_seconds)
    }

    pub fn stale_after(&self) -> Duration {
        Duration::from_secs(self.stale_after_seconds)
    }

    pub fn offline_after(&self) -> Duration {
        Duration::from_secs(self.offline_after_seconds)
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
        assert_eq!(c.poll_seconds, 5);
        assert_eq!(c.stale_after_seconds, 60);
        assert_eq!(c.offline_after_seconds, 600);
        assert_eq!(c.telemetry_poll_ms, 1000);
        assert_eq!(c.alerts_cap, 100);
        c.validate().unwrap();
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
        let err = parse(&["--poll-seconds", "0"]).validate().unwrap_err();
        assert!(err.to_string().contains("PULSE_POLL_SECONDS"), "{err}");
        let mut c = parse(&[]);
        c.database_url = "mysql://nope".into();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }
}
