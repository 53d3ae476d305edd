//! `pulse-gateway`: holds WebSocket clients, authenticates them by JWT, subscribes to NATS once
//! per subject per instance and fans each message out to its local clients.
//!
//! # Layout
//! - [`config`]: flags and environment, validated at start.
//! - [`auth`]: JWT verification (HS256 secret, RS256/ES256 from JWKS) and close codes.
//! - [`server`]: the `/api/v2/ws` upgrade, origin check, caps, ops endpoints.
//! - [`connection`]: one client's session: requests, pushes, heartbeats, expiry, drain.
//! - [`context`]: what a connection is given by the gateway (settings and shared services).
//! - [`fanout`]: reference-counted NATS subscriptions and delivery to client queues.
//! - [`replay`]: an event topic's order on this instance, and resuming clients from `since`.
//! - [`history`]: reading an event topic's history from the `PULSE_EVENTS` stream.
//! - [`stream_reads`]: a subject's newest stored message, from the stream's leader first (a
//!   replica can be behind it).
//! - [`queue`]: a client's bounded outbound queue (conflating snapshots).
//! - [`frame`]: a message made once and shared by every recipient.
//! - [`ids`]: connection and topic identifiers.
//! - [`caps`], [`ratelimit`]: connection caps and per-connection message rate.
//! - [`revoke`]: closing the connections of a user that was deleted or whose role changed.
//! - [`streams`]: whether the JetStream streams the gateway reads answer, shown in `/readyz`.
//! - [`metrics`]: Prometheus metrics.
//!
//! Modules depend on each other in one direction only (no two import each other, directly or
//! round a loop): `server` admits a connection and hands it a [`context::ConnectionContext`];
//! `connection` uses the fan-out and the queue; the fan-out uses `replay`, `history`,
//! `stream_reads` and `queue`, which use only `frame`, `ids` and `stream_reads`; `devices`
//! uses only `stream_reads`; `ids`, `metrics`, `config`, `ratelimit` and `stream_reads` use no
//! other module of the gateway, and `streams` only `metrics`.

pub mod auth;
pub mod caps;
pub mod config;
pub mod connection;
pub mod context;
pub mod devices;
pub mod fanout;
pub mod frame;
pub mod history;
pub mod ids;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
pub mod replay;
pub mod revoke;
pub mod server;
pub mod stream_reads;
pub mod streams;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pulse_common::ops::{Ops, Readiness};
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;

use crate::auth::Authenticator;
use crate::caps::Caps;
use crate::context::{ConnectionContext, Settings};
use crate::fanout::FanOut;
use crate::metrics::Metrics;
use crate::ratelimit::MessageQuota;
use crate::server::AppState;

/// Runs a gateway on `listener` until `shutdown` resolves, then drains: readiness goes false,
/// new connections are refused, and clients are closed with 1012 spread over
/// `PULSE_DRAIN_SECONDS`. Returns when every client is gone or the drain deadline passed.
pub async fn run(
    config: GatewayConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let ops_listener = match config.ops_addr {
        Some(addr) => Some(pulse_common::startup::bind(addr, "PULSE_GATEWAY_OPS_ADDR")?),
        None => None,
    };
    let config = Arc::new(config);
    let stop = pulse_common::startup::cancel_on(shutdown);

    let mut registry = pulse_common::startup::registry();
    let metrics = Metrics::register(&mut registry);
    let readiness = Readiness::new(&["nats", "accepting"]);
    let slow = metrics.nats_slow_consumer.clone();
    let dropped = Arc::new(tokio::sync::Notify::new());
    let dropping = dropped.clone();
    // Connected in the background: the gateway answers health checks at once, and refuses
    // WebSockets with 503 until NATS is there.
    let link = pulse_common::nats::connect_in_background(
        &config.nats,
        "pulse-gateway",
        config.nats_subscription_capacity,
        move || {
            slow.inc();
            dropping.notify_one();
        },
    )
    .await?;
    let fanout = FanOut::new(
        link.client.clone(),
        metrics.clone(),
        crate::fanout::EventLimits {
            cache: config.events_cache,
            cache_bytes: config.events_cache_bytes,
            replay_max: config.replay_max_events,
            replay_max_bytes: config.replay_max_bytes,
            subjects_per_tenant: config.max_subjects_per_tenant,
            subjects_per_user: config.max_subjects_per_user,
        },
    );
    let auth = Authenticator::new(&config);
    if config.jwks_url.is_some()
        && let Err(e) = auth.refresh_jwks().await
    {
        tracing::warn!(error = %e.without_url(), "cannot fetch JWKS yet; will retry on first use");
    }
    // Each client the caps let in is a socket; the rest (NATS, listeners, the binary's own
    // files) fits in the margin.
    pulse_common::startup::raise_open_files(
        config.max_connections as u64 + 1024,
        "PULSE_MAX_CONNECTIONS",
    );
    let caps = Caps::new(
        crate::caps::Limits {
            total: config.max_connections,
            per_tenant: config.max_connections_per_tenant,
            per_user: config.max_connections_per_user,
            per_address: config.max_connections_per_address,
        },
        metrics.clone(),
    );
    let revocations = Arc::new(crate::revoke::Revocations::default());
    crate::revoke::follow(link.client.clone(), revocations.clone(), stop.clone());
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    // After a reconnect, clients get the current snapshots again: some may have changed
    // while the link was down.
    let resync = fanout.clone();
    pulse_common::startup::mirror_nats(
        link.state.clone(),
        readiness.clone(),
        stop.clone(),
        move || {
            let fanout = resync.clone();
            async move {
                tracing::info!("NATS reconnected; resending current snapshots");
                fanout.resync().await;
            }
        },
    );
    fanout.read_again_when_dropped(dropped, stop.clone());
    fanout.check_streams_every(config.stream_check, stop.clone());
    readiness.set("accepting", true);

    let js = async_nats::jetstream::new(link.client.clone());
    crate::streams::watch(
        js.clone(),
        link.state.clone(),
        readiness.clone(),
        metrics.stream_readable.clone(),
        stop.clone(),
    );
    let devices = crate::devices::Devices::new(js);
    let connection = Arc::new(ConnectionContext {
        settings: Settings::from(&*config),
        message_quota: MessageQuota::new(config.client_msgs_per_second, config.client_msgs_burst),
        auth: auth.clone(),
        fanout,
        devices,
        metrics: metrics.clone(),
        revocations: revocations.clone(),
        drain: drain_rx.clone(),
    });
    let state = AppState {
        config: config.clone(),
        auth,
        caps: caps.clone(),
        metrics,
        drain: drain_rx,
        next_conn: Arc::new(AtomicU64::new(1)),
        nats: link.state.clone(),
        connection,
    };
    let ops = Ops {
        registry: Arc::new(registry),
        readiness: readiness.clone(),
    };
    let server_stop = CancellationToken::new();
    // On an address of their own, the ops endpoints answer until the public server stops (so
    // `/readyz` says 503 while the instance drains).
    let (app, ops_server) = match ops_listener {
        Some(listener) => {
            tracing::info!(ops = %listener.local_addr()?, "ops endpoints on their own address");
            let ops_server = tokio::spawn(pulse_common::ops::serve(
                listener,
                ops,
                server_stop.clone().cancelled_owned(),
            ));
            (server::router(state, None), Some(ops_server))
        }
        None => (server::router(state, Some(ops)), None),
    };
    // Pushes are written one batch per send: Nagle's algorithm would hold a batch back until
    // the client acknowledged the previous one (up to its delayed-ACK timeout, 40 ms).
    let serving = pulse_common::http_server::Serving {
        nodelay: true,
        ..Default::default()
    };
    let server = tokio::spawn(pulse_common::http_server::serve(
        listener,
        app,
        serving,
        server_stop.clone().cancelled_owned(),
    ));
    tracing::info!("gateway ready");

    stop.cancelled().await;
    tracing::info!(
        connections = caps.total(),
        drain = ?config.drain,
        "draining: refusing new connections, closing clients with 1012"
    );
    readiness.set("accepting", false);
    let _ = drain_tx.send(true);
    let deadline = Instant::now() + config.drain + Duration::from_secs(2);
    while caps.total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if caps.total() > 0 {
        tracing::warn!(left = caps.total(), "drain deadline passed");
    }
    server_stop.cancel();
    server.await.context("server task failed")?;
    if let Some(ops_server) = ops_server {
        ops_server.await.context("ops server task failed")?;
    }
    pulse_common::nats::flush_before_exit(&link.client).await;
    tracing::info!("gateway stopped");
    Ok(())
}
