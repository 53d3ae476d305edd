//! `pulse-poller`: reads PostgreSQL and publishes per-tenant alerts and fleet snapshots and
//! per-device telemetry to NATS, only when something changed.
//!
//! # Layout
//! - [`config`]: flags and environment, validated at start.
//! - [`leader`]: active/standby on a PostgreSQL advisory lock.
//! - [`changes`]: `LISTEN pulse_changes`, folded into dirty tenants.
//! - [`engine`]: the active poller's loop: notifications, the safety-net poll (which reads
//!   only the fleets that may have changed), telemetry, NATS reconnects.
//! - [`alerts`], [`fleet`], [`telemetry`]: the reads, one query per tenant set.
//! - [`publisher`]: JetStream publishing with acknowledgements.
//! - [`fence`]: keeps a deposed poller's late snapshots out of the state stream.
//! - [`late`]: watches for late snapshots that got past it, to publish (or purge) again.
//! - [`registry`]: the device registry (`PULSE_DEVICES`) the gateways check device
//!   subscriptions against.
//! - [`relay`]: the event outbox relayed to NATS in `seq` order, and its retention.
//! - [`outbox`]: the outbox's events marked to be relayed again, into an events stream lost.
//! - [`users`]: changes to users (deleted, role, every session ended, one session ended), read
//!   from `user_changes`, passed on to the gateways.
//! - [`streams`]: the JetStream streams of the contract.
//! - [`seq`]: the `seq` clock.
//! - [`metrics`]: Prometheus metrics.
//! - [`migrate`]: `pulse-poller migrate`, which waits for PostgreSQL to answer first.
//!
//! The schema, the pools and `pulse_settings` are `pulse-db`'s; demo data is `pulse-simulator`'s.

pub mod alerts;
pub mod changes;
pub mod config;
pub mod engine;
pub mod fence;
pub mod fleet;
pub mod late;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod publisher;
pub mod registry;
pub mod relay;
pub mod seq;
pub mod streams;
pub mod telemetry;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use pulse_common::backoff::Backoff;
use pulse_common::ops::{Ops, Readiness};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::PollerConfig;

use crate::changes::ChangeFeed;
use crate::engine::Engine;
use crate::metrics::{Metrics, Stage};
use crate::seq::SeqClock;

/// Runs the poller until `shutdown` resolves: ops endpoints on `listener`, standby until the
/// leadership lock is won, then active until it is lost or the process stops.
pub async fn run(
    config: PollerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let stop = pulse_common::startup::cancel_on(shutdown);

    let mut registry = pulse_common::startup::registry();
    let metrics = Metrics::register(&mut registry);
    // `streams`: the active poller's JetStream streams and bucket exist (a standby needs none).
    let readiness = Readiness::new(&["database", "nats", "streams"]);
    readiness.set("streams", true);
    readiness.set_info("role", "standby");
    let ops = Ops {
        registry: Arc::new(registry),
        readiness: readiness.clone(),
    };
    let ops_server = tokio::spawn(pulse_common::ops::serve(
        listener,
        ops,
        stop.clone().cancelled_owned(),
    ));

    let pool = pulse_db::lazy_pool(
        &config.database_url,
        config.db_pool_size,
        Some(&config.db_role),
    )?;
    let link = pulse_common::nats::connect(
        &config.nats,
        "pulse-poller",
        || {},
        stop.clone().cancelled_owned(),
    )
    .await?;
    pulse_common::startup::mirror_nats(
        link.state.clone(),
        readiness.clone(),
        stop.clone(),
        || async {},
    );
    let js = async_nats::jetstream::new(link.client.clone());
    let seq = Arc::new(SeqClock::new());

    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        // Only a poller that reaches NATS asks for the lock: one holding it without NATS would
        // keep a standby that reaches NATS from publishing.
        tokio::select! {
            () = pulse_common::nats::connected(&link.state) => {}
            () = stop.cancelled() => break,
        }
        match leader::try_acquire(&config.database_url).await {
            Ok(Some(leadership)) => {
                readiness.set("database", true);
                backoff.reset();
                let mut engine = Engine::new(
                    config.clone(),
                    pool.clone(),
                    js.clone(),
                    metrics.clone(),
                    seq.clone(),
                );
                serve_as_active(
                    &mut engine,
                    leadership,
                    &config,
                    &pool,
                    &js,
                    &link,
                    &metrics,
                    &readiness,
                    &stop,
                )
                .await;
            }
            Ok(None) => {
                readiness.set("database", true);
                backoff.reset();
                tokio::select! {
                    () = tokio::time::sleep(config.standby_retry) => {}
                    () = stop.cancelled() => {}
                }
            }
            Err(e) => {
                readiness.set("database", false);
                metrics.error(Stage::Leadership);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot reach PostgreSQL");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
    }

    pulse_common::nats::flush_before_exit(&link.client).await;
    pool.close().await;
    ops_server.await.context("ops server task failed")?;
    tracing::info!("poller stopped");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn serve_as_active(
    engine: &mut Engine,
    mut leadership: leader::Leadership,
    config: &PollerConfig,
    pool: &PgPool,
    js: &async_nats::jetstream::Context,
    link: &pulse_common::nats::NatsLink,
    metrics: &Metrics,
    readiness: &Readiness,
    stop: &CancellationToken,
) {
    tracing::info!("became the active poller");
    metrics.active.set(1);
    readiness.set_info("role", "active");
    let session = stop.child_token();
    let feed = ChangeFeed::default();
    let listener = tokio::spawn(changes::listen(
        config.database_url.clone(),
        feed.clone(),
        metrics.clone(),
        config.listen_check,
        session.clone(),
    ));

    // The relay starts once `prepare` set the streams up: until then `streams::ensure` may
    // still empty an events stream of the old numbering (again, if it failed after doing so),
    // and would take with it events relayed meanwhile, already marked relayed.
    let (prepared, streams_ready) = tokio::sync::oneshot::channel::<()>();
    let relay = relay::Relay::new(
        pool.clone(),
        js.clone(),
        metrics.clone(),
        engine.write_failures(),
        config.events_max_age(),
    )
    .gated_by(engine.relay_gate());
    let relay = tokio::spawn({
        let (feed, nats, session) = (feed.clone(), link.state.clone(), session.clone());
        async move {
            // Not sent when the poller stops being active first.
            if streams_ready.await.is_ok() {
                relay.run(feed, nats, session).await;
            }
        }
    });

    let users = tokio::spawn(users::forward(
        feed.clone(),
        pool.clone(),
        link.client.clone(),
        session.clone(),
    ));
    let late = tokio::spawn(late::watch(
        link.client.clone(),
        engine.seq_clock(),
        feed.clone(),
        session.clone(),
    ));

    let work = async {
        prepare(engine, config, pool, js, metrics, readiness, &session).await;
        if session.is_cancelled() {
            return;
        }
        // Streams set up: nothing empties the events stream from here on.
        let _ = prepared.send(());
        engine.first_sync(&link.state).await;
        engine.run(feed, link.state.clone(), session.clone()).await;
    };
    tokio::select! {
        reason = leadership.lost() => {
            metrics.error(Stage::Leadership);
            tracing::error!(%reason, "lost leadership; stepping down to standby");
        }
        () = pulse_common::nats::away_for(&link.state, NATS_AWAY_STEP_DOWN) => {
            metrics.error(Stage::Leadership);
            tracing::error!(
                away = ?NATS_AWAY_STEP_DOWN,
                "NATS unreachable; stepping down so that a poller that reaches it takes over"
            );
        }
        () = work => {}
        // Stopping does not wait for the engine's step to end: one waiting on a NATS ack that
        // will not come (NATS down) would hold the process for the ack's whole timeout.
        () = stop.cancelled() => {}
    }
    // Standby from this instant: the engine stopped with `work`, and the tasks below stop
    // at their next step (a database call they are in is cut short when dropped).
    session.cancel();
    metrics.active.set(0);
    readiness.set_info("role", "standby");
    readiness.set("streams", true);
    let mut tasks = [listener, relay, users, late];
    let joined = tokio::time::timeout(TASKS_STOP, async {
        for task in &mut tasks {
            let _ = task.await;
        }
    })
    .await;
    if joined.is_err() {
        tracing::warn!(waited = ?TASKS_STOP, "background tasks did not stop in time; cutting them off");
        for task in &tasks {
            task.abort();
        }
    }
    // What waits in the outbox is the next active poller's to relay and report; a standby
    // reporting its last backlog for ever would look like a relay that is stuck.
    metrics.relay_backlog.set(0);
    leadership.release().await;
}

/// How long the active poller goes without NATS before it steps down: with PostgreSQL still
/// there it would hold the lock, and nothing would be published, however long its own link
/// stays down (a network policy, revoked credentials, a partition between it and NATS alone).
/// A standby asks for the lock only while it reaches NATS; when none does, the first one back
/// takes it.
pub const NATS_AWAY_STEP_DOWN: Duration = Duration::from_secs(10);

/// How long the active poller's background tasks get to finish their step once it stops
/// being active. Their work is recorded in the database, so one cut off loses nothing: the
/// next active poller picks it up.
const TASKS_STOP: Duration = Duration::from_secs(2);

/// What an active poller does before its loop: settings for the triggers, streams and the `seq`
/// floor. Failures are logged and retried; it returns early only when `stop` is cancelled.
async fn prepare(
    engine: &mut Engine,
    config: &PollerConfig,
    pool: &PgPool,
    js: &async_nats::jetstream::Context,
    metrics: &Metrics,
    readiness: &Readiness,
    stop: &CancellationToken,
) {
    // Triggers and the web service apply the same status thresholds and fleet cap as the
    // poller: recorded beside the rest, which does not wait for it, until it is.
    tokio::spawn(record_settings(
        pool.clone(),
        config.applied(),
        metrics.clone(),
        stop.clone(),
    ));
    // Nothing is published before the streams exist: on a first start, JetStream (with
    // replicas, a cluster electing its leaders) may take a while. Readiness says so meanwhile.
    readiness.set("streams", false);
    let waiting = Waiting {
        metrics,
        readiness,
        stop,
    };
    // An events stream missing at activation (NATS lost its storage while no poller was
    // active) is created empty: the relay refills it from the outbox, as after a restore.
    // Marked once: an `ensure` that keeps failing finds the stream missing at every try, and
    // the outbox is read whole to mark it.
    let outbox_marked = AtomicBool::new(false);
    let ensured = waiting
        .until_done("set up JetStream streams", "JetStream", || async {
            // A lookup that fails is tried again with the rest: taken for "not missing", an
            // events stream `ensure` then created would never be refilled; taken for "missing",
            // one that was there would get every retained event again, past JetStream's
            // duplicate window. Found missing, the outbox's events are marked to be relayed
            // again at once, before `ensure` is tried: an `ensure` that created it and then
            // failed (the device bucket refused, an answer lost) leaves it there for the next
            // look to find, this poller's or, should it step down first, its successor's. The
            // relay does not run yet, so no pass of it can mark an event relayed after this.
            let events = pulse_proto::subject::EVENTS_STREAM;
            let lost = streams::missing(js)
                .await?
                .iter()
                .any(|name| name == events);
            if lost && !outbox_marked.load(Ordering::Relaxed) {
                outbox::relay_again(pool).await?;
                outbox_marked.store(true, Ordering::Relaxed);
            }
            streams::ensure(js, config).await
        })
        .await;
    if ensured.is_none() {
        return;
    }
    // Nothing is published before the newest seq already out there is known: a snapshot with
    // a lower seq would be dropped by every consumer as old.
    let floor = waiting
        .until_done("read the newest seq", "the newest seq", || async {
            let floor = streams::newest_seq(js).await;
            if floor.is_err()
                && let Err(e) = streams::ensure(js, config).await
            {
                tracing::debug!(error = format!("{e:#}"), "streams still unavailable");
            }
            floor
        })
        .await;
    let Some(floor) = floor else { return };
    engine.raise_seq_floor(floor);
    readiness.set("streams", true);
    readiness.set_info("streams", "ready");
}

/// Writes what this poller applies to `pulse_settings`, with backoff until it is written (the
/// database may be down as the poller takes over) or the activation ends.
async fn record_settings(
    pool: PgPool,
    applied: pulse_db::settings::Applied,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let Err(e) = pulse_db::settings::write(&pool, &applied).await else {
            return;
        };
        metrics.error(Stage::Database);
        let delay = backoff.next_delay();
        tracing::warn!(error = %e, retry_in = ?delay, "cannot write pulse_settings");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What an active poller waits for before it publishes, shown in its readiness.
struct Waiting<'a> {
    metrics: &'a Metrics,
    readiness: &'a Readiness,
    stop: &'a CancellationToken,
}

impl Waiting<'_> {
    /// Runs `step` until it succeeds, with backoff between tries; meanwhile readiness says
    /// `waiting for <what>: <error>`. `None` when stopped first.
    async fn until_done<T, F, Fut>(&self, doing: &str, what: &str, mut step: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let e = match step().await {
                Ok(done) => return Some(done),
                Err(e) => e,
            };
            self.metrics.error(Stage::Streams);
            let delay = backoff.next_delay();
            let error = format!("{e:#}");
            tracing::error!(%error, retry_in = ?delay, "cannot {doing}; not publishing yet");
            self.readiness
                .set_info("streams", format!("waiting for {what}: {error}"));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stop.cancelled() => return None,
            }
        }
    }
}
