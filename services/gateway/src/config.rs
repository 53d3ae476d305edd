//! The gateway's configuration: flags with environment fallbacks. Bounds are checked as the
//! values are parsed (`pulse_common::config_value`); what relates several settings is checked
//! by [`GatewayConfig::validate`] at start.

use std::net::SocketAddr;
use std::time::Duration;

use pulse_common::config_value::{duration, number, secs};

/// Where the gateway listens unless `PULSE_GATEWAY_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8081";

/// Everything a gateway instance needs; every field has an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayConfig {
    /// Where WebSocket clients are served, and the ops endpoints unless
    /// `PULSE_GATEWAY_OPS_ADDR` is set.
    #[arg(long, env = "PULSE_GATEWAY_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Where `/healthz`, `/readyz` and `/metrics` are served instead, `PULSE_GATEWAY_ADDR`
    /// then answering them 404: the metrics name tenants, and a load balancer that passes every
    /// path through would show them to anyone. Unset: on `PULSE_GATEWAY_ADDR`.
    #[arg(long, env = "PULSE_GATEWAY_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub nats: pulse_common::nats::NatsArgs,

    /// Messages the NATS client holds for one subject before the gateway's fan-out takes them.
    /// Beyond them it drops messages (counted in `pulse_gateway_nats_slow_consumer_total`), and
    /// the gateway then reads every subject's current snapshot and missed events again.
    #[arg(long, env = "PULSE_NATS_SUBSCRIPTION_CAPACITY", default_value = "65536",
          value_parser = number::<usize>(1..=10_000_000))]
    pub nats_subscription_capacity: usize,

    /// How often the subjects in use are compared with the streams: alerts and fleet snapshots
    /// newer in `PULSE_STATE`, and events stored in `PULSE_EVENTS` beyond what was delivered,
    /// are handed out. A message lost on its way here (sent while the route between two NATS
    /// cluster servers was down) arrives this much later at the latest.
    #[arg(long = "stream-check-seconds", env = "PULSE_STREAM_CHECK_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(3600)))]
    pub stream_check: Duration,

    /// Shared secret for HS256 tokens. At least one of this and PULSE_JWKS_URL is required.
    #[arg(long, env = "PULSE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The secret PULSE_JWT_SECRET replaces, still accepted while the web services switch to
    /// the new one: the new secret here first, then the two swapped, then this dropped
    /// (deploy/README.md). Tokens live a minute, so the overlap can be short.
    #[arg(long, env = "PULSE_JWT_SECRET_PREVIOUS", hide_env_values = true)]
    pub jwt_secret_previous: Option<String>,

    /// JWKS document with RS256/ES256 keys, fetched and cached; refetched on an unknown `kid`.
    #[arg(long, env = "PULSE_JWKS_URL", hide_env_values = true)]
    pub jwks_url: Option<String>,

    /// An unknown `kid` refetches the JWKS at most this often, so forged tokens cannot flood
    /// the key server.
    #[arg(long = "jwks-min-refetch-seconds", env = "PULSE_JWKS_MIN_REFETCH_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(86_400)))]
    pub jwks_min_refetch: Duration,

    /// Fetched JWKS keys are used this long without asking again; past it, the next token
    /// signed with one fetches the document first, so a key the issuer removed (a leaked one)
    /// stops being accepted. A fetch that fails keeps the keys there were.
    #[arg(long = "jwks-max-age-seconds", env = "PULSE_JWKS_MAX_AGE_SECONDS", default_value = "300",
          value_parser = duration(secs(1), secs(86_400)))]
    pub jwks_max_age: Duration,

    /// Required `iss` claim, when set.
    #[arg(long, env = "PULSE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "PULSE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `nbf`, in seconds: a token from an issuer whose clock runs
    /// ahead is let in this much early. `exp` is held to the gateway's clock (a connection
    /// ends at it).
    #[arg(long, env = "PULSE_JWT_LEEWAY_SECONDS", default_value = "5",
          value_parser = number::<u64>(0..=300))]
    pub jwt_leeway_seconds: u64,

    /// Comma-separated browser origins allowed to connect; unset allows any origin.
    #[arg(long, env = "PULSE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Largest client frame accepted; a larger one closes the connection with 1009.
    #[arg(long, env = "PULSE_MAX_MESSAGE_BYTES", default_value = "65536",
          value_parser = number::<usize>(256..=16 * 1024 * 1024))]
    pub max_message_bytes: usize,

    /// Most subscriptions one connection may hold.
    #[arg(long, env = "PULSE_MAX_SUBSCRIPTIONS", default_value = "256",
          value_parser = number::<usize>(1..=100_000))]
    pub max_subscriptions: usize,

    /// Sustained client messages per second per connection.
    #[arg(long, env = "PULSE_CLIENT_MSGS_PER_SECOND", default_value = "50",
          value_parser = number::<u32>(1..=100_000))]
    pub client_msgs_per_second: u32,

    /// Burst of client messages allowed above the sustained rate.
    #[arg(long, env = "PULSE_CLIENT_MSGS_BURST", default_value = "100",
          value_parser = number::<u32>(1..=1_000_000))]
    pub client_msgs_burst: u32,

    /// Interval of server pings.
    #[arg(long = "ping-seconds", env = "PULSE_PING_SECONDS", default_value = "25",
          value_parser = duration(secs(1), secs(3600)))]
    pub ping_interval: Duration,

    /// A client that sends nothing (not even a pong) for this long is closed.
    #[arg(long = "idle-timeout-seconds", env = "PULSE_IDLE_TIMEOUT_SECONDS", default_value = "60",
          value_parser = duration(secs(2), secs(86_400)))]
    pub idle_timeout: Duration,

    /// Most WebSocket connections on this instance.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS", default_value = "50000",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_connections: usize,

    /// Most WebSocket connections of one tenant on this instance.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS_PER_TENANT", default_value = "20000",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_connections_per_tenant: usize,

    /// Most WebSocket connections of one user (the token's `sub`) on this instance.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS_PER_USER", default_value = "100",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_connections_per_user: usize,

    /// Most WebSocket connections from one client address on this instance (an IPv6 client
    /// counts as its /64; behind `PULSE_TRUSTED_PROXIES`, the address they forward for).
    #[arg(long, env = "PULSE_MAX_CONNECTIONS_PER_ADDRESS", default_value = "1000",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_connections_per_address: usize,

    /// Most distinct subjects (alerts, fleet, each device, each event topic) one tenant may
    /// have subscribed on this instance; more subscribes get `too_many_subjects`.
    #[arg(long, env = "PULSE_MAX_SUBJECTS_PER_TENANT", default_value = "10000",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_subjects_per_tenant: usize,

    /// Most of those subjects one user (the token's `sub`) may have brought into use on this
    /// instance while they stay in use; a new subject past that gets `too_many_subjects`, so
    /// one user (a script with many connections) cannot take the whole tenant's budget.
    #[arg(long, env = "PULSE_MAX_SUBJECTS_PER_USER", default_value = "1000",
          value_parser = number::<usize>(1..=10_000_000))]
    pub max_subjects_per_user: usize,

    /// Proxies whose `X-Forwarded-For` is believed for the client address (the load
    /// balancer in front of the gateways), addresses or networks, comma-separated.
    #[arg(long, env = "PULSE_TRUSTED_PROXIES", default_value = "", value_parser = pulse_common::client_addr::parse_trusted)]
    pub trusted_proxies: pulse_common::client_addr::TrustedProxies,

    /// On SIGTERM, clients are closed with 1012 spread over this many seconds.
    #[arg(long = "drain-seconds", env = "PULSE_DRAIN_SECONDS", default_value = "10",
          value_parser = duration(Duration::ZERO, secs(3600)))]
    pub drain: Duration,

    /// Event messages a client may have queued before it is closed with 4008. Keep it above
    /// 128 in production (a burst from NATS may reach a queue 128 at a time); tests stage a
    /// slow consumer with a tiny one.
    #[arg(long, env = "PULSE_CLIENT_QUEUE_EVENTS", default_value = "1024",
          value_parser = number::<usize>(1..=1_000_000))]
    pub client_queue_events: usize,

    /// Recent events kept per event topic in use (and at most 1 MiB of them), so clients
    /// resuming with `since` are served from memory; older ones are read from the events
    /// stream.
    #[arg(long, env = "PULSE_EVENTS_CACHE", default_value = "256",
          value_parser = number::<usize>(0..=100_000))]
    pub events_cache: usize,

    /// Bytes of those recent events all event subjects of this instance keep together (each
    /// keeps at most 1 MiB of its own): past it, a subject keeps fewer, or none, and clients
    /// resuming on it are served from the events stream. Bounds the cache's memory whatever
    /// the number of subjects.
    #[arg(long, env = "PULSE_EVENTS_CACHE_BYTES", default_value = "268435456",
          value_parser = number::<usize>(0..=64 * 1024 * 1024 * 1024))]
    pub events_cache_bytes: usize,

    /// Most events replayed to one client subscribing with `since`, and waiting for one
    /// connection at once across its channels; a client further behind gets an
    /// `events_reset` (reason `limit`) and the newest ones.
    #[arg(long, env = "PULSE_REPLAY_MAX_EVENTS", default_value = "10000",
          value_parser = number::<usize>(1..=1_000_000))]
    pub replay_max_events: usize,

    /// Most bytes of events one read of the events stream holds for a replay (a resume with
    /// `since`, or missed events read back), and of replayed events waiting for one connection
    /// across its channels until they are written: past them, the oldest are let go, and the
    /// client gets an `events_reset` (reason `limit`) and the newest ones, as past
    /// `PULSE_REPLAY_MAX_EVENTS`. Bounds replay memory whatever the events' size.
    #[arg(long, env = "PULSE_REPLAY_MAX_BYTES", default_value = "16777216",
          value_parser = number::<usize>(65_536..=1024 * 1024 * 1024))]
    pub replay_max_bytes: usize,

    /// A write to a client that takes longer than this closes the connection (dead peer).
    #[arg(long = "write-timeout-seconds", env = "PULSE_WRITE_TIMEOUT_SECONDS", default_value = "10",
          value_parser = duration(secs(1), secs(600)))]
    pub write_timeout: Duration,

    /// WebSocket read buffer per connection, in bytes. It is allocated and zero-filled for
    /// every connection, so it is most of an idle connection's memory; client requests are
    /// small, and a larger frame grows it as needed.
    #[arg(long, env = "PULSE_WS_READ_BUFFER_BYTES", default_value = "1024",
          value_parser = number::<usize>(256..=1024 * 1024))]
    pub ws_read_buffer_bytes: usize,

    /// WebSocket write buffer per connection, in bytes: frames are coalesced up to this size
    /// before a socket write.
    #[arg(long, env = "PULSE_WS_WRITE_BUFFER_BYTES", default_value = "16384",
          value_parser = number::<usize>(0..=16 * 1024 * 1024))]
    pub ws_write_buffer_bytes: usize,
}

/// A configuration value that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("set PULSE_JWT_SECRET or PULSE_JWKS_URL: without a key no token can be verified")]
    NoKeys,
    #[error(
        "PULSE_GATEWAY_OPS_ADDR must differ from PULSE_GATEWAY_ADDR ({0}); leave it unset to serve the ops endpoints there"
    )]
    SameAddr(SocketAddr),
    #[error("PULSE_JWT_SECRET (and PULSE_JWT_SECRET_PREVIOUS) must be at least 32 bytes")]
    WeakSecret,
    #[error("PULSE_JWT_SECRET_PREVIOUS is the secret PULSE_JWT_SECRET replaces: set both")]
    PreviousAlone,
    #[error("PULSE_JWKS_URL must be an http(s) URL, got {0:?}")]
    JwksUrl(String),
    #[error(
        "PULSE_IDLE_TIMEOUT_SECONDS ({}) must exceed PULSE_PING_SECONDS ({})",
        pulse_common::duration::format(*idle),
        pulse_common::duration::format(*ping)
    )]
    IdleBelowPing { idle: Duration, ping: Duration },
    #[error(
        "PULSE_JWKS_MAX_AGE_SECONDS ({}) must not be below PULSE_JWKS_MIN_REFETCH_SECONDS ({}): the keys could not be fetched again that soon",
        pulse_common::duration::format(*max_age),
        pulse_common::duration::format(*min_refetch)
    )]
    JwksMaxAge {
        max_age: Duration,
        min_refetch: Duration,
    },
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.jwt_secret, &self.jwks_url) {
            (None, None) => return Err(ConfigError::NoKeys),
            (Some(s), _) if s.len() < 32 => return Err(ConfigError::WeakSecret),
            _ => {}
        }
        match (&self.jwt_secret, &self.jwt_secret_previous) {
            (None, Some(_)) => return Err(ConfigError::PreviousAlone),
            (_, Some(s)) if s.len() < 32 => return Err(ConfigError::WeakSecret),
            _ => {}
        }
        if let Some(url) = &self.jwks_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::JwksUrl(url.clone()));
        }
        if self.ops_addr == Some(self.addr) && self.addr.port() != 0 {
            return Err(ConfigError::SameAddr(self.addr));
        }
        if self.jwks_max_age < self.jwks_min_refetch {
            return Err(ConfigError::JwksMaxAge {
                max_age: self.jwks_max_age,
                min_refetch: self.jwks_min_refetch,
            });
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::IdleBelowPing {
                idle: self.idle_timeout,
                ping: self.ping_interval,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ops_address_must_be_another_one() {
        let config = |extra: &[&str]| {
            let mut args = vec!["g", "--jwt-secret", "0123456789abcdef0123456789abcdef"];
            args.extend_from_slice(extra);
            pulse_test_support::parse_config::<GatewayConfig>(&args)
        };
        let same = config(&["--addr", "127.0.0.1:8081", "--ops-addr", "127.0.0.1:8081"]);
        let err = same.validate().unwrap_err().to_string();
        assert!(err.contains("PULSE_GATEWAY_OPS_ADDR must differ"), "{err}");
        let other = config(&["--addr", "127.0.0.1:8081", "--ops-addr", "127.0.0.1:9081"]);
        assert!(other.validate().is_ok());
        assert_eq!(config(&[]).ops_addr, None);
    }

    #[test]
    fn a_previous_secret_needs_the_new_one_and_its_strength() {
        let check = |args: &[&str]| {
            let mut all = vec!["g", "--jwks-url", "http://keys.example/jwks.json"];
            all.extend_from_slice(args);
            let config = pulse_test_support::parse_config::<GatewayConfig>(&all);
            config.validate().err().map(|e| e.to_string())
        };
        const LONG: &str = "0123456789abcdef0123456789abcdef";
        let alone = check(&["--jwt-secret-previous", LONG]).unwrap();
        assert!(alone.contains("set both"), "{alone}");
        let weak = check(&["--jwt-secret", LONG, "--jwt-secret-previous", "short"]).unwrap();
        assert!(weak.contains("at least 32 bytes"), "{weak}");
        assert_eq!(
            check(&["--jwt-secret", LONG, "--jwt-secret-previous", LONG]),
            None
        );
        // Keys cannot be fetched again sooner than the refetch interval allows.
        let short = check(&["--jwks-max-age-seconds", "10"]).unwrap();
        assert!(
            short.contains("PULSE_JWKS_MAX_AGE_SECONDS (10s)"),
            "{short}"
        );
        assert_eq!(check(&["--jwks-max-age-seconds", "30"]), None);
    }

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let shown = pulse_test_support::secrets_shown_in_help::<GatewayConfig>();
        assert!(shown.is_empty(), "--help prints the values of {shown:?}");
    }
}
