//! The gateway's configuration: flags with environment fallbacks, validated at start.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything a gateway instance needs; every field has an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayConfig {
    /// Where WebSocket clients and the ops endpoints are served.
    #[arg(long, env = "PULSE_GATEWAY_ADDR", default_value = "0.0.0.0:8081")]
    pub addr: SocketAddr,

    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Shared secret for HS256 tokens. At least one of this and PULSE_JWKS_URL is required.
    #[arg(long, env = "PULSE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// JWKS document with RS256/ES256 keys, fetched and cached; refetched on an unknown `kid`.
    #[arg(long, env = "PULSE_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// An unknown `kid` refetches the JWKS at most this often, so forged tokens cannot flood
    /// the key server.
    #[arg(long, env = "PULSE_JWKS_MIN_REFETCH_SECONDS", default_value_t = 30)]
    pub jwks_min_refetch_seconds: u64,

    /// Required `iss` claim, when set.
    #[arg(long, env = "PULSE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "PULSE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "PULSE_JWT_LEEWAY_SECONDS", default_value_t = 5)]
    pub jwt_leeway_seconds: u64,

    /// Comma-separated browser origins allowed to connect; unset allows any origin.
    #[arg(long, env = "PULSE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Largest client frame accepted; a larger one closes the connection with 1009.
    #[arg(long, env = "PULSE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Most subscriptions one connection may hold.
    #[arg(long, env = "PULSE_MAX_SUBSCRIPTIONS", default_value_t = 256)]
    pub max_subscriptions: usize,

    /// Sustained client messages per second per connection.
    #[arg(long, env = "PULSE_CLIENT_MSGS_PER_SECOND", default_value_t = 50)]
    pub client_msgs_per_second: u32,

    /// Burst of client messages allowed above the sustained rate.
    #[arg(long, env = "PULSE_CLIENT_MSGS_BURST", default_value_t = 100)]
    pub client_msgs_burst: u32,

    /// Interval of server pings.
    #[arg(long, env = "PULSE_PING_SECONDS", default_value_t = 25)]
    pub ping_seconds: u64,

    /// A client that sends nothing (not even a pong) for this long is closed.
    #[arg(long, env = "PULSE_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub idle_timeout_seconds: u64,

    /// Most WebSocket connections on this instance.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Most WebSocket connections of one tenant on this instance.
    #[arg(
        long,
        env = "PULSE_MAX_CONNECTIONS_PER_TENANT",
        default_value_t = 20_000
    )]
    pub max_connections_per_tenant: usize,

    /// Most WebSocket connections of one user (the token's `sub`) on this instance.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    pub max_connections_per_user: usize,

    /// Most WebSocket connections from one client address on this instance (behind
    /// `PULSE_TRUSTED_PROXIES`, the address they forward for).
    #[arg(
        long,
        env = "PULSE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_000
    )]
    pub max_connections_per_address: usize,

    /// Most distinct subjects (alerts, fleet, each device, each event topic) one tenant may
    /// have subscribed on this instance; more subscribes get `too_many_subjects`.
    #[arg(long, env = "PULSE_MAX_SUBJECTS_PER_TENANT", default_value_t = 10_000)]
    pub max_subjects_per_tenant: usize,

    /// Proxies whose `X-Forwarded-For` is believed for the client address (the load
    /// balancer in front of the gateways), addresses or networks, comma-separated.
    #[arg(long, env = "PULSE_TRUSTED_PROXIES", default_value = "", value_parser = pulse_common::client_addr::parse_trusted)]
    pub trusted_proxies: pulse_common::client_addr::TrustedProxies,

    /// On SIGTERM, clients are closed with 1012 spread over this many seconds.
    #[arg(long, env = "PULSE_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,

    /// Event messages a client may have queued before it is closed with 4008.
    #[arg(long, env = "PULSE_CLIENT_QUEUE_EVENTS", default_value_t = 1024)]
    pub client_queue_events: usize,

    /// Recent events kept per event topic in use, so clients resuming with `since` are
    /// served from memory; older ones are read from the events stream.
    #[arg(long, env = "PULSE_EVENTS_CACHE", default_value_t = 256)]
    pub events_cache: usize,

    /// Most events replayed to one client subscribing with `since`; a client further behind
    /// gets an `events_reset` (reason `limit`) and the newest ones.
    #[arg(long, env = "PULSE_REPLAY_MAX_EVENTS", default_value_t = 10_000)]
    pub replay_max_events: usize,

    /// A write to a client that takes longer than this closes the connection (dead peer).
    #[arg(long, env = "PULSE_WRITE_TIMEOUT_SECONDS", default_value_t = 10)]
    pub write_timeout_seconds: u64,

    /// WebSocket read buffer per connection, in bytes. It is allocated and zero-filled for
    /// every connection, so it is most of an idle connection's memory; client requests are
    /// small, and a larger frame grows it as needed.
    #[arg(long, env = "PULSE_WS_READ_BUFFER_BYTES", default_value_t = 1024)]
    pub ws_read_buffer_bytes: usize,

    /// WebSocket write buffer per connection, in bytes: frames are coalesced up to this size
    /// before a socket write.
    #[arg(long, env = "PULSE_WS_WRITE_BUFFER_BYTES", default_value_t = 16 * 1024)]
    pub ws_write_buffer_bytes: usize,
}

/// A configuration value that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("set PULSE_JWT_SECRET or PULSE_JWKS_URL: without a key no token can be verified")]
    NoKeys,
    #[error("PULSE_JWT_SECRET must be at least 32 bytes")]
    WeakSecret,
    #[error("PULSE_JWKS_URL must be an http(s) URL, got {0:?}")]
    JwksUrl(String),
    #[error("NATS_URL is empty")]
    NatsUrl,
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("PULSE_IDLE_TIMEOUT_SECONDS ({idle}) must exceed PULSE_PING_SECONDS ({ping})")]
    IdleBelowPing { idle: u64, ping: u64 },
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

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.jwt_secret, &self.jwks_url) {
            (None, None) => return Err(ConfigError::NoKeys),
            (Some(s), _) if s.len() < 32 => return Err(ConfigError::WeakSecret),
            _ => {}
        }
        if let Some(url) = &self.jwks_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::JwksUrl(url.clone()));
        }
        if self.nats_url.trim().is_empty() {
            return Err(ConfigError::NatsUrl);
        }
        range(
            "PULSE_JWKS_MIN_REFETCH_SECONDS",
            self.jwks_min_refetch_seconds,
            0,
            86_400,
        )?;
        range("PULSE_JWT_LEEWAY_SECONDS", self.jwt_leeway_seconds, 0, 300)?;
        range(
            "PULSE_MAX_MESSAGE_BYTES",
            self.max_message_bytes as u64,
            256,
            16 * 1024 * 1024,
        )?;
        range(
            "PULSE_MAX_SUBSCRIPTIONS",
            self.max_subscriptions as u64,
            1,
            100_000,
        )?;
        range(
            "PULSE_CLIENT_MSGS_PER_SECOND",
            self.client_msgs_per_second.into(),
            1,
            100_000,
        )?;
        range(
            "PULSE_CLIENT_MSGS_BURST",
            self.client_msgs_burst.into(),
            1,
            1_000_000,
        )?;
        range("PULSE_PING_SECONDS", self.ping_seconds, 1, 3600)?;
        range(
            "PULSE_IDLE_TIMEOUT_SECONDS",
            self.idle_timeout_seconds,
            2,
            86_400,
        )?;
        if self.idle_timeout_seconds <= self.ping_seconds {
            return Err(ConfigError::IdleBelowPing {
                idle: self.idle_timeout_seconds,
                ping: self.ping_seconds,
            });
        }
        range(
            "PULSE_MAX_CONNECTIONS",
            self.max_connections as u64,
            1,
            10_000_000,
        )?;
        range(
            "PULSE_MAX_CONNECTIONS_PER_TENANT",
            self.max_connections_per_tenant as u64,
            1,
            10_000_000,
        )?;
        range(
            "PULSE_MAX_CONNECTIONS_PER_USER",
            self.max_connections_per_user as u64,
            1,
            10_000_000,
        )?;
        range(
            "PULSE_MAX_CONNECTIONS_PER_ADDRESS",
            self.max_connections_per_address as u64,
            1,
            10_000_000,
        )?;
        range(
            "PULSE_MAX_SUBJECTS_PER_TENANT",
            self.max_subjects_per_tenant as u64,
            1,
            10_000_000,
        )?;
        range("PULSE_DRAIN_SECONDS", self.drain_seconds, 0, 3600)?;
        range(
            "PULSE_CLIENT_QUEUE_EVENTS",
            self.client_queue_events as u64,
            1,
            1_000_000,
        )?;
        range("PULSE_EVENTS_CACHE", self.events_cache as u64, 0, 100_000)?;
        range(
            "PULSE_REPLAY_MAX_EVENTS",
            self.replay_max_events as u64,
            1,
            1_000_000,
        )?;
        range(
            "PULSE_WRITE_TIMEOUT_SECONDS",
            self.write_timeout_seconds,
            1,
            600,
        )?;
        range(
            "PULSE_WS_READ_BUFFER_BYTES",
            self.ws_read_buffer_bytes as u64,
            256,
            1024 * 1024,
        )?;
        range(
            "PULSE_WS_WRITE_BUFFER_BYTES",
            self.ws_write_buffer_bytes as u64,
            0,
            16 * 1024 * 1024,
        )?;
        Ok(())
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_seconds)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }
}
