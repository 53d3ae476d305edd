//! The web service's configuration: flags with environment fallbacks. Bounds are checked as
//! the values are parsed (see `pulse_common::config_value`); what relates several settings is
//! checked by [`WebConfig::validate`] at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pulse_common::config_value::{duration, number, secs};

/// Where the ops endpoints listen unless `PULSE_WEB_OPS_ADDR` says otherwise.
pub const DEFAULT_OPS_ADDR: &str = "0.0.0.0:9080";

#[derive(clap::Args, Debug, Clone)]
pub struct WebConfig {
    /// Where the dashboard and the REST API are served.
    #[arg(long, env = "PULSE_WEB_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Where `/healthz`, `/readyz` and `/metrics` are served: a port of their own, kept off
    /// the public route that serves the dashboard.
    #[arg(long, env = "PULSE_WEB_OPS_ADDR", default_value = DEFAULT_OPS_ADDR)]
    pub ops_addr: SocketAddr,

    #[command(flatten)]
    pub database: pulse_db::DatabaseArgs,

    /// Secret that signs WebSocket tickets (HS256); the gateways verify tickets with the same
    /// secret. Sessions are random tokens kept in the database, not signed. At least 32 bytes.
    #[arg(
        long,
        value_name = "PULSE_JWT_SECRET",
        env = "PULSE_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: String,

    /// `iss` written into tokens, when set (set the gateways' PULSE_JWT_ISSUER to match).
    #[arg(long, env = "PULSE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// `aud` written into tokens, when set (set the gateways' PULSE_JWT_AUDIENCE to match).
    #[arg(long, env = "PULSE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Gateway WebSocket URLs handed to browsers with each ticket, comma-separated
    /// (e.g. `wss://rt.example.com/api/v2/ws`).
    #[arg(
        long,
        env = "PULSE_GATEWAY_URLS",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8081/api/v2/ws"
    )]
    pub gateway_urls: Vec<String>,

    /// How long a login lasts (1 minute to 30 days).
    #[arg(long = "session-ttl-seconds", env = "PULSE_SESSION_TTL_SECONDS", default_value = "28800",
          value_parser = duration(secs(60), secs(30 * 86_400)))]
    pub session_ttl: Duration,

    /// How long a WebSocket ticket is valid (5 to 60 s).
    #[arg(long = "ticket-ttl-seconds", env = "PULSE_TICKET_TTL_SECONDS", default_value = "60",
          value_parser = duration(secs(5), secs(60)))]
    pub ticket_ttl: Duration,

    /// Mark the session cookie `Secure` (serve over HTTPS); it is then named
    /// `__Host-pulse_session`, which no other host of the domain can set.
    #[arg(long, env = "PULSE_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Login attempts per minute for one email from one client address (four times as many
    /// per address, ten times as many per email from addresses that never logged in as it).
    /// Every attempt counts, before its password is checked.
    #[arg(long, env = "PULSE_LOGIN_FAILURES_PER_MINUTE", default_value = "5",
          value_parser = number::<u32>(1..=10_000))]
    pub login_failures_per_minute: u32,

    /// Passwords hashed at once (argon2, ~19 MiB each); more logins wait up to a second,
    /// then get 503 with Retry-After.
    #[arg(long, env = "PULSE_LOGIN_CONCURRENCY", default_value = "4",
          value_parser = number::<usize>(1..=256))]
    pub login_concurrency: usize,

    /// Proxies whose `X-Forwarded-For` is believed: addresses or networks, comma-separated
    /// (`10.0.0.0/8,192.168.1.10`). Empty: the connection's peer is the client.
    #[arg(long, env = "PULSE_TRUSTED_PROXIES", default_value = "", value_parser = pulse_common::client_addr::parse_trusted)]
    pub trusted_proxies: pulse_common::client_addr::TrustedProxies,

    /// Bearer token that lets a backend service publish events for any tenant, at least 32
    /// bytes; unset disables service publishing.
    #[arg(long, env = "PULSE_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Folder of the built dashboard.
    #[arg(long, env = "PULSE_WEB_ROOT", default_value = "web/dist")]
    pub web_root: PathBuf,

    /// Events a tenant may publish per second through `POST /api/v2/events`; more get 429.
    #[arg(long, env = "PULSE_EVENTS_PER_SECOND", default_value = "500",
          value_parser = number::<u32>(1..=1_000_000))]
    pub events_per_second: u32,

    /// Events a tenant may publish in a burst above `PULSE_EVENTS_PER_SECOND`.
    #[arg(long, env = "PULSE_EVENTS_BURST", default_value = "1000",
          value_parser = number::<u32>(1..=1_000_000))]
    pub events_burst: u32,

    /// A request that takes longer is answered 408 (1 s to 1 h).
    #[arg(long = "http-timeout-seconds", env = "PULSE_HTTP_TIMEOUT_SECONDS", default_value = "30",
          value_parser = duration(secs(1), secs(3600)))]
    pub http_timeout: Duration,

    /// Requests handled at once; more are answered 503 with Retry-After at once.
    #[arg(long, env = "PULSE_HTTP_MAX_IN_FLIGHT", default_value = "1024",
          value_parser = number::<usize>(1..=1_000_000))]
    pub http_max_in_flight: usize,

    /// PostgreSQL connections for requests (the readiness check has one of its own).
    #[arg(long, env = "PULSE_DB_POOL_SIZE", default_value = "8",
          value_parser = number::<u32>(1..=256))]
    pub db_pool_size: u32,

    /// The database role the web service works as (`SET ROLE` on every connection); a
    /// tenant's data it reads and writes as `pulse_tenant`. Empty: work as the login.
    #[arg(long, env = "PULSE_WEB_DB_ROLE", default_value = pulse_db::roles::WEB)]
    pub db_role: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    DatabaseUrl(#[from] pulse_db::InvalidDatabaseUrl),
    #[error("PULSE_JWT_SECRET must be at least 32 bytes")]
    WeakSecret,
    #[error("PULSE_GATEWAY_URLS must be ws:// or wss:// URLs, got {0:?}")]
    GatewayUrl(String),
    #[error("PULSE_PUBLISH_TOKEN must be at least 32 bytes")]
    WeakPublishToken,
    #[error(
        "PULSE_WEB_OPS_ADDR must differ from PULSE_WEB_ADDR ({0}): the ops endpoints stay off the public port"
    )]
    SameAddr(SocketAddr),
}

impl WebConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        if self.jwt_secret.len() < 32 {
            return Err(ConfigError::WeakSecret);
        }
        if self.ops_addr == self.addr && self.addr.port() != 0 {
            return Err(ConfigError::SameAddr(self.addr));
        }
        for url in &self.gateway_urls {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(ConfigError::GatewayUrl(url.clone()));
            }
        }
        if self.publish_token.as_ref().is_some_and(|t| t.len() < 32) {
            return Err(ConfigError::WeakPublishToken);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: WebConfig,
    }

    /// An operator sets the secret through the environment: when it is missing, the error
    /// names the variable, not only the flag.
    #[test]
    fn a_missing_jwt_secret_is_named_by_its_variable() {
        use clap::CommandFactory as _;
        // Only the flag counts here, whatever the environment of the test run holds.
        let args = ["pulse-web", "--database-url", "postgres://localhost/pulse"];
        let Err(e) = Cli::command()
            .mut_arg("jwt_secret", |a| a.env(None::<&str>))
            .try_get_matches_from(args)
        else {
            panic!("a configuration without a JWT secret parsed");
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("<PULSE_JWT_SECRET>"), "{e}");
    }

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        let shown = pulse_test_support::secrets_shown_in_help::<WebConfig>();
        assert!(shown.is_empty(), "--help prints the values of {shown:?}");
    }
}
