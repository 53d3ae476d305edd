//! `pulse-web`: serves the dashboard and the tenant REST API, logs users in, hands out
//! WebSocket tickets for the gateways, and accepts published events.
//!
//! # Layout
//! - [`config`]: flags and environment, validated at start.
//! - [`server`]: routes, shared state, headers, metrics.
//! - [`account`]: login, logout, `me`, WebSocket tickets.
//! - [`session`]: session cookies and tokens.
//! - [`api`]: devices, telemetry, alerts, fleet, events.
//! - [`login_guard`]: login attempt limits, client addresses behind proxies, hashing in flight.
//! - [`shared_limits`]: login attempts and publishes counted by every instance together.
//! - [`login_addresses`]: where users logged in from, shared by every instance.
//! - [`error`]: the API's error policy.
//! - [`openapi`]: the OpenAPI document.
//!
//! Pools, tenant-scoped transactions and `pulse_settings` are `pulse-db`'s; so are the
//! migrations, which this service never applies itself.

pub mod account;
pub mod api;
pub mod config;
pub mod error;
pub mod login_addresses;
pub mod login_guard;
pub mod metrics;
pub mod openapi;
pub mod publish_limit;
pub mod server;
pub mod session;
pub mod shared_limits;
pub mod state;
pub mod ticket;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pulse_common::ops::{Ops, Readiness};
use tokio_util::sync::CancellationToken;

pub use config::WebConfig;

use crate::login_guard::LoginGuard;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::ticket::Tokens;

/// Serves the dashboard and the API on `listener` and the ops endpoints on `ops_listener`
/// until `shutdown` resolves.
pub async fn run(
    config: WebConfig,
    listener: tokio::net::TcpListener,
    ops_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    if !config.web_root.join("index.html").exists() {
        tracing::warn!(root = %config.web_root.display(), "no built dashboard; run `npm run build` in web/");
    }
    if config.publish_token.is_some() {
        tracing::warn!(
            "PULSE_PUBLISH_TOKEN is set: it publishes events for every tenant; give each backend \
             a per-tenant publish key (POST /api/v2/publish-keys) and unset it"
        );
    }
    let stop = pulse_common::startup::cancel_on(shutdown);
    // The hash unknown emails are checked against, made now rather than by the first such
    // login: that one would block an async worker for a whole argon2 run and take longer than
    // a login of a known email.
    tokio::task::spawn_blocking(account::dummy_hash)
        .await
        .context("cannot prepare the login hash")?;
    let mut registry = pulse_common::startup::registry();
    let metrics = Metrics::register(&mut registry);
    let readiness = Readiness::new(&["database"]);
    let pool = pulse_db::lazy_pool(
        &config.database.url,
        config.db_pool_size,
        Some(&config.db_role),
    )?;
    watch_database(pool.connect_options(), readiness.clone(), stop.clone());
    let state = AppState {
        tokens: Tokens::new(
            &config.jwt_secret,
            config.jwt_issuer.clone(),
            config.jwt_audience.clone(),
        ),
        logins: Arc::new(LoginGuard::new(
            config.login_failures_per_minute,
            config.login_concurrency,
            config.trusted_proxies.clone(),
        )),
        event_limiter: Arc::new(publish_limit::TenantLimiter::new(
            config.events_per_second,
            config.events_burst,
        )),
        pool,
        metrics,
        config: Arc::new(config),
    };
    let ops = Ops {
        registry: Arc::new(registry),
        readiness,
    };
    // The router lets so many requests in at once, each with a socket, and idle keep-alive
    // connections hold more; the margin covers them, the pool and the binary's own files.
    pulse_common::startup::raise_open_files(
        state.config.http_max_in_flight as u64 + 1024,
        "PULSE_HTTP_MAX_IN_FLIGHT",
    );
    let app = server::router(state);
    let ops_server = tokio::spawn(pulse_common::ops::serve(
        ops_listener,
        ops,
        stop.clone().cancelled_owned(),
    ));
    tracing::info!("web service ready");
    let serving = pulse_common::http_server::Serving::default();
    pulse_common::http_server::serve(listener, app, serving, stop.clone().cancelled_owned()).await;
    stop.cancel();
    ops_server.await.context("ops server task failed")?;
    Ok(())
}

/// How long the database has to answer a readiness check, connecting included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Mirrors the database's reachability into readiness. The web service needs nothing else:
/// events go to the database outbox, and the poller relays them to NATS.
///
/// Checked on a connection of its own, outside the request pool: a pool whose every connection
/// is busy says nothing of the database (under a spike, every instance would turn unready at
/// once, and the ingress answer 503 to everything, the dashboard's page included), and one
/// that cannot reach it reports that as a wait that timed out too. A check the database does
/// not answer in [`CHECK_TIMEOUT`] (refused, or partitioned: the connection open, nothing
/// coming back) turns readiness off, and the connection is opened anew for the next one.
fn watch_database(
    options: std::sync::Arc<sqlx::postgres::PgConnectOptions>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut held: Option<sqlx::PgConnection> = None;
        loop {
            let check = async {
                use sqlx::Connection as _;
                let mut conn = match held.take() {
                    Some(conn) => conn,
                    None => sqlx::PgConnection::connect_with(&options).await?,
                };
                sqlx::query("SELECT 1").execute(&mut conn).await?;
                Ok::<_, sqlx::Error>(conn)
            };
            match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(Ok(conn)) => {
                    held = Some(conn);
                    readiness.set("database", true);
                }
                Ok(Err(_)) | Err(_) => readiness.set("database", false),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = stop.cancelled() => return,
            }
        }
    });
}
