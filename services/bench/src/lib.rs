//! `pulse-bench`: a load generator for Pulse gateways. It opens many WebSocket clients (each
//! from its own loopback source address), publishes straight to NATS with a send timestamp in
//! every message, and measures connection setup, end-to-end latency (publish → frame read),
//! loss, and what the gateways spend in CPU and memory.
//!
//! # Layout
//! - [`config`]: flags and environment, validated at start.
//! - [`scenario`]: idle, broadcast, telemetry, churn, storm, sweep, events; the phases they
//!   share.
//! - [`population`]: a ramped-up set of long-lived clients and their shared counters.
//! - [`client`]: one WebSocket client: connect, subscribe, read; [`source`]: source addresses.
//! - [`publisher`]: paced publishing to NATS on its own thread.
//! - [`outbox`]: paced event inserts into the PostgreSQL outbox on its own thread, and what of
//!   them reaches NATS.
//! - [`scan`]: reading the bench fields out of a frame without a JSON parse.
//! - [`latency`]: histograms; [`report`]: results, table, merge; [`probe`]: gateway CPU,
//!   RSS and `/metrics`.
//! - [`coord`]: keeping the processes of one run in step; [`shards`]: running several.
//! - [`token`]: minting HS256 tokens; [`errors`]: failures by kind.

pub mod client;
pub mod config;
pub mod coord;
pub mod errors;
pub mod latency;
pub mod outbox;
pub mod population;
pub mod probe;
pub mod publisher;
pub mod report;
pub mod scan;
pub mod scenario;
pub mod shards;
pub mod source;
pub mod token;

pub use config::{BenchConfig, Scenario};
pub use report::Report;
pub use scenario::run;

/// Why a run could not be carried out (individual client failures are counted, not errors).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("tenant id {0:?}: {1}")]
    Tenant(String, String),
    #[error(transparent)]
    Target(#[from] client::ClientError),
    #[error("cannot connect to NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Coord(#[from] coord::CoordError),
    #[error(transparent)]
    Publish(#[from] publisher::PublishError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error("events: {0}")]
    Events(String),
}

/// Runs `work` on a thread of its own with a single-threaded runtime, so its pacing is not
/// disturbed by the clients' tasks (the publishers use it).
pub fn on_own_thread<F, Fut>(name: &str, work: F) -> std::io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(work()))?;
    Ok(())
}

/// Starts a worker [`on_own_thread`]: `open` runs there first (a connection, a pool), and once
/// it succeeded `serve` takes what is sent to the returned channel, at most 4 requests waiting.
/// Fails with `open`'s error, or with `gone` when the thread ended without saying.
pub async fn start_worker<T, R, E, Open, Serve>(
    name: &str,
    open: impl FnOnce() -> Open + Send + 'static,
    serve: impl FnOnce(T, tokio::sync::mpsc::Receiver<R>) -> Serve + Send + 'static,
    gone: E,
) -> Result<tokio::sync::mpsc::Sender<R>, E>
where
    Open: std::future::Future<Output = Result<T, E>>,
    Serve: std::future::Future<Output = ()>,
    R: Send + 'static,
    E: From<std::io::Error> + Send + 'static,
{
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    on_own_thread(name, move || async move {
        match open().await {
            Ok(opened) => {
                let _ = ready_tx.send(Ok(()));
                serve(opened, rx).await;
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
    })?;
    ready_rx.await.map_err(|_| gone)??;
    Ok(requests)
}
