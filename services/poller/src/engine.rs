//! The active poller's work: keep every tenant's alerts and fleet snapshot and every device's
//! latest reading current on NATS, publishing only what changed.
//!
//! It reacts to change notifications at once (debounced), re-reads every `PULSE_POLL_SECONDS`
//! as a safety net (the tenants, their alerts, and the devices of the tenants whose fleet may
//! have changed: `FleetWatch`), reads new telemetry every `PULSE_TELEMETRY_POLL_MS`,
//! and republishes everything after NATS reconnects. A stream (or the device bucket) found
//! missing or unable to store is created again and everything republished ([`restore`]). It
//! never queries per client, only per tenant set, and never stops on a transient error: the
//! next cycle retries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use futures::StreamExt as _;
use pulse_common::nats::{LinkState, unless_dropped};
use pulse_proto::subject::STATE_STREAM;
use pulse_proto::{AlertsSnapshot, DeviceId, FleetSnapshot, Subject, TenantId, Timestamp};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::turns::{Job, Turns};
use crate::alerts;
use crate::changes::ChangeFeed;
use crate::config::PollerConfig;
use crate::fence::Fence;
use crate::fleet::{self, Fleet};
use crate::metrics::{Kind, Metrics, Query, Stage};
use crate::publisher::{self, Outgoing};
use crate::registry::DeviceRegistry;
use crate::seq::SeqClock;
use crate::streams::WriteFailures;
use crate::telemetry::Cursor;

mod late;
mod purge;
mod readings;
mod restore;
mod resync;
mod safety_net;
mod turns;

use safety_net::FleetWatch;

/// What was last published for a tenant's fleet.
#[derive(Debug, Clone, Copy)]
struct FleetMark {
    content: u64,
    last_seen: u64,
    at: Instant,
}

pub struct Engine {
    config: PollerConfig,
    pool: PgPool,
    js: jetstream::Context,
    metrics: Metrics,
    seq: Arc<SeqClock>,
    tenants: BTreeSet<TenantId>,
    alerts_published: HashMap<TenantId, u64>,
    fleet_published: HashMap<TenantId, FleetMark>,
    /// Tenants whose fleet was read by the safety net and went out (or was unchanged) since.
    fleet_watch: HashMap<TenantId, FleetWatch>,
    /// Snapshots listing fewer items than their cap to fit `max_payload` ([`Engine::note_fit`]).
    trimmed: HashSet<(Kind, TenantId)>,
    telemetry: Cursor,
    /// What this activation last stored per state subject, so late publishes of a deposed
    /// poller cannot replace it.
    fence: Fence,
    /// Opened on the first fleet read; `None` until JetStream allowed it.
    registry: Option<DeviceRegistry>,
    /// The first sync did not finish: the loop starts with a resync.
    resync_due: bool,
    /// When a resync may run again after one failed ([`resync`]).
    resync_pace: resync::Pace,
    /// What a restore of lost streams has done so far ([`restore`]).
    restoring: restore::Restoring,
    /// A purge of a deleted tenant failed: the next waits until then ([`purge`]).
    purges_paused_until: Option<Instant>,
    /// Tenants purged lately ([`purge`]), whose late snapshots are purged again ([`late`]).
    purged: purge::Purged,
    /// Writes to the streams that failed, the relay's included ([`restore`]).
    failures: WriteFailures,
    /// Held while a deleted tenant is purged, so no relay pass is under way ([`purge`]).
    relay_gate: crate::streams::PassGate,
    /// When this poller last deleted each stream to create it again ([`restore`]): it could
    /// not store, or was created while a deletion was under way.
    own_deletions: HashMap<String, Instant>,
    /// Streams the server announced deleted, by the time it did, until seen gone or created
    /// anew ([`restore`]).
    announced: HashMap<String, restore::Announced>,
}

/// Runs `cycle` unless NATS drops first ([`unless_dropped`]): the reply it waits for then
/// cannot come, and the reconnect republishes everything anyway.
async fn on_link(
    link: &watch::Receiver<LinkState>,
    cycle: impl Future<Output = Result<(), CycleError>>,
) -> Result<(), CycleError> {
    unless_dropped(link, cycle)
        .await
        .unwrap_or(Err(CycleError::NatsDropped))
}

/// Why a cycle did not finish; logged and counted, then retried.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Publish(#[from] publisher::PublishError),
    #[error("the NATS connection dropped mid-cycle")]
    NatsDropped,
}

impl Engine {
    pub fn new(
        config: PollerConfig,
        pool: PgPool,
        js: jetstream::Context,
        metrics: Metrics,
        seq: Arc<SeqClock>,
    ) -> Self {
        let failures = WriteFailures::new(metrics.clone());
        Self {
            config,
            pool,
            js,
            metrics,
            fence: Fence::new(seq.clone()),
            seq,
            tenants: BTreeSet::new(),
            alerts_published: HashMap::new(),
            fleet_published: HashMap::new(),
            fleet_watch: HashMap::new(),
            trimmed: HashSet::new(),
            telemetry: Cursor::default(),
            registry: None,
            resync_due: false,
            resync_pace: Default::default(),
            restoring: Default::default(),
            purges_paused_until: None,
            purged: Default::default(),
            failures,
            relay_gate: Default::default(),
            own_deletions: HashMap::new(),
            announced: HashMap::new(),
        }
    }

    /// Every later `seq` will be greater than `floor`.
    pub fn raise_seq_floor(&self, floor: u64) {
        self.seq.raise_floor(floor);
    }

    /// The clock the engine's `seq`s come from.
    pub fn seq_clock(&self) -> Arc<SeqClock> {
        self.seq.clone()
    }

    /// How many devices the engine remembers a published reading of.
    pub fn telemetry_devices_recorded(&self) -> usize {
        self.telemetry.devices_recorded()
    }

    /// Forgets what was published, so the next cycles publish everything again.
    pub fn forget_published(&mut self) {
        self.alerts_published.clear();
        self.fleet_published.clear();
        self.fleet_watch.clear();
        self.telemetry.reset();
    }

    /// Re-reads the tenant list; drops the state of tenants that are gone, and purges deleted
    /// tenants' data from NATS ([`purge`]).
    pub async fn load_tenants(&mut self) -> Result<(), CycleError> {
        // Deleted tenants are purged before the tenant list is read: one deleted between the
        // two reads is then missing from the list, where the other way round it stayed listed
        // after its purge, and its empty snapshots were published into the purged streams.
        // Purged ones are forgotten too, so that one created again is published afresh.
        let purged = self.purge_deleted().await;
        self.retain_tenant_state(|t| !purged.contains(t));
        let started = Instant::now();
        let ids: Vec<String> = sqlx::query_scalar("SELECT tenant_id::text FROM tenants")
            .fetch_all(&self.pool)
            .await?;
        self.metrics.observe_query(Query::Tenants, started);
        let before = std::mem::take(&mut self.tenants);
        self.tenants = ids
            .into_iter()
            .filter_map(|id| TenantId::parse(id).ok())
            .collect();
        let gone: Vec<TenantId> = (before.difference(&self.tenants))
            .filter(|t| !purged.contains(t))
            .cloned()
            .collect();
        if let Some(registry) = self.registry.as_mut()
            && let Err(e) = registry.remove_tenants(&gone).await
        {
            self.failures
                .report(&crate::streams::bucket_stream(), e.store_failed());
            self.metrics.error(Stage::Registry);
            tracing::warn!(error = %e, "cannot remove deleted tenants from the device registry");
        }
        let tenants = std::mem::take(&mut self.tenants);
        self.retain_tenant_state(|t| tenants.contains(t));
        self.tenants = tenants;
        self.metrics.tenants.set(self.tenants.len() as i64);
        Ok(())
    }

    /// Drops what the engine remembers of the tenants `keep` refuses (purged, or gone), so
    /// that one listed again is published afresh. Done as soon as they are purged, whether or
    /// not the tenant list can be read after.
    fn retain_tenant_state(&mut self, keep: impl Fn(&TenantId) -> bool) {
        self.alerts_published.retain(|t, _| keep(t));
        self.fleet_published.retain(|t, _| keep(t));
        self.fleet_watch.retain(|t, _| keep(t));
        self.trimmed.retain(|(_, t)| keep(t));
        self.telemetry.retain_tenants(&keep);
        self.fence.retain(|s| keep(s.tenant()));
    }

    /// Tenants, then every tenant's alerts and fleet.
    pub async fn full_sync(&mut self) -> Result<(), CycleError> {
        self.load_tenants().await?;
        let all: Vec<TenantId> = self.tenants.iter().cloned().collect();
        self.refresh_alerts(&all).await?;
        self.refresh_fleet(&all).await
    }

    /// Reads and publishes the alerts snapshot of `tenants` where it changed.
    #[tracing::instrument(name = "refresh_alerts", skip_all, fields(tenants = tenants.len()))]
    pub async fn refresh_alerts(&mut self, tenants: &[TenantId]) -> Result<(), CycleError> {
        if tenants.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let snapshots = alerts::read_open(&self.pool, tenants, self.config.alerts_cap).await?;
        self.metrics.observe_query(Query::Alerts, started);
        let ts = Timestamp::now();
        let mut batch = Vec::new();
        for (tenant, open) in snapshots {
            if !self.tenants.contains(&tenant) {
                continue;
            }
            let hash = open.content_hash();
            if self.alerts_published.get(&tenant) == Some(&hash) {
                self.metrics.unchanged(Kind::Alerts);
                continue;
            }
            let seq = self.seq.next();
            let mut message = AlertsSnapshot {
                kind: Default::default(),
                tenant_id: tenant.clone(),
                seq,
                ts,
                alerts: open.alerts,
                total_open: open.total_open,
                open_by_severity: open.by_severity,
            };
            let to = ((tenant.clone(), hash), Subject::Alerts(tenant), seq);
            batch.push(self.fit(Kind::Alerts, to, &mut message, |m| &mut m.alerts)?);
        }
        let (published, fence) = (&mut self.alerts_published, &mut self.fence);
        let kind = Kind::Alerts;
        Ok(
            publisher::publish_snapshots(&self.js, &self.metrics, kind, batch, published, fence)
                .await?,
        )
    }

    /// Reads and publishes the fleet snapshot of `tenants` where it changed.
    pub async fn refresh_fleet(&mut self, tenants: &[TenantId]) -> Result<(), CycleError> {
        self.read_fleet(tenants, None).await
    }

    /// [`Self::refresh_fleet`]; with the `prints` the safety net took just before, each tenant
    /// read is watched from here on ([`FleetWatch`]), and without them it is not.
    #[tracing::instrument(name = "refresh_fleet", skip_all, fields(tenants = tenants.len()))]
    async fn read_fleet(
        &mut self,
        tenants: &[TenantId],
        prints: Option<HashMap<TenantId, fleet::Fingerprint>>,
    ) -> Result<(), CycleError> {
        if tenants.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (now, devices) = fleet::read_devices(&self.pool, tenants).await?;
        self.metrics.observe_query(Query::Fleet, started);
        let rows: usize = devices.values().map(Vec::len).sum();
        self.metrics.fleet_devices_read.inc_by(rows as u64);
        self.forget_gone_devices(&devices);
        let registry_behind = self.sync_registry(&devices).await;
        let batch = match self.fleet_batch(now, devices, prints) {
            Ok(batch) => batch,
            Err(e) => {
                // Nothing went out: every tenant read is read again.
                for tenant in tenants {
                    self.fleet_watch.remove(tenant);
                }
                return Err(e);
            }
        };
        let (published, fence) = (&mut self.fleet_published, &mut self.fence);
        let kind = Kind::Fleet;
        let result =
            publisher::publish_snapshots(&self.js, &self.metrics, kind, batch, published, fence)
                .await
                .map_err(CycleError::from);
        // A fleet that did not go out, or whose devices the registry may not list yet, is read
        // again at the next safety-net poll.
        let published = &self.fleet_published;
        self.fleet_watch
            .retain(|t, _| published.contains_key(t) && !registry_behind.contains(t));
        result
    }

    /// The fleet messages of `devices` (read as of `now`) that changed, each tenant read
    /// watched with its print from `prints` (see [`Self::watch`]).
    fn fleet_batch(
        &mut self,
        now: time::OffsetDateTime,
        devices: BTreeMap<TenantId, Vec<fleet::DeviceRow>>,
        mut prints: Option<HashMap<TenantId, fleet::Fingerprint>>,
    ) -> Result<Vec<Outgoing<(TenantId, FleetMark)>>, CycleError> {
        let applied = self.config.applied();
        let (thresholds, cap) = (applied.thresholds, applied.fleet_devices_cap);
        let refresh = self.config.fleet_refresh;
        let mut batch = Vec::new();
        for (tenant, rows) in devices {
            if !self.tenants.contains(&tenant) {
                continue;
            }
            let fleet = Fleet::compute(now, &rows, thresholds, cap);
            let mark = FleetMark {
                content: fleet.content_hash(),
                last_seen: fleet.last_seen_hash(),
                at: Instant::now(),
            };
            let print = prints
                .as_mut()
                .map(|p| p.remove(&tenant).unwrap_or_default());
            let transition = fleet::next_transition(now, &rows, thresholds);
            if let Some(prev) = self.fleet_published.get(&tenant) {
                let same = prev.content == mark.content;
                let seen_moved = prev.last_seen != mark.last_seen;
                if same && (!seen_moved || prev.at.elapsed() < refresh) {
                    self.metrics.unchanged(Kind::Fleet);
                    self.watch(&tenant, print, transition, seen_moved);
                    continue;
                }
            }
            self.watch(&tenant, print, transition, false);
            let seq = self.seq.next();
            let mut message = FleetSnapshot {
                kind: Default::default(),
                tenant_id: tenant.clone(),
                seq,
                ts: Timestamp(now),
                counts: fleet.counts,
                devices: fleet.devices,
            };
            let to = ((tenant.clone(), mark), Subject::Fleet(tenant), seq);
            batch.push(self.fit(Kind::Fleet, to, &mut message, |m| &mut m.devices)?);
        }
        Ok(batch)
    }

    /// The snapshot `message` (number `seq`, for `subject`), ready to publish: its `items`
    /// listed in part when all of them would not fit in the NATS server's `max_payload`, which
    /// [`Self::note_fit`] reports.
    fn fit<M: serde::Serialize, I, K>(
        &mut self,
        kind: Kind,
        (key, subject, seq): (K, Subject, u64),
        message: &mut M,
        items: impl Fn(&mut M) -> &mut Vec<I>,
    ) -> Result<Outgoing<K>, CycleError> {
        let tenant = subject.tenant().clone();
        let limit = publisher::payload_limit(&self.js);
        let (out, left_out) = Outgoing::fitted(key, subject, seq, message, limit, &items)?;
        self.note_fit(kind, &tenant, left_out, items(message).len());
        Ok(out)
    }

    /// Says when a tenant's snapshot starts listing fewer items than its cap allows because
    /// the whole list would exceed the NATS server's `max_payload`, and when it stops: once
    /// each, not on every publish. The counts in the snapshot still cover everything.
    fn note_fit(&mut self, kind: Kind, tenant: &TenantId, left_out: usize, listed: usize) {
        let key = (kind, tenant.clone());
        if left_out > 0 {
            self.metrics.trimmed(kind);
            if self.trimmed.insert(key) {
                tracing::warn!(
                    %tenant, ?kind, listed, left_out,
                    "snapshot lists fewer items to fit the NATS server's max_payload; \
                     raise max_payload or lower the cap"
                );
            }
        } else if self.trimmed.remove(&key) {
            tracing::info!(%tenant, ?kind, listed, "snapshot lists every item again");
        }
    }

    /// Forgets the readings published for devices of the tenants read that are gone, so that
    /// the record does not grow with devices added and deleted.
    fn forget_gone_devices(&mut self, devices: &BTreeMap<TenantId, Vec<fleet::DeviceRow>>) {
        let exist: HashSet<(&str, &str)> = devices
            .iter()
            .flat_map(|(t, rows)| rows.iter().map(|r| (t.as_str(), r.device_id.as_str())))
            .collect();
        let keep = |t: &TenantId, d: &DeviceId| {
            !devices.contains_key(t) || exist.contains(&(t.as_str(), d.as_str()))
        };
        self.telemetry.retain_devices(keep);
        self.fence.retain(|s| match s {
            Subject::Telemetry(t, d) => keep(t, d),
            _ => true,
        });
    }

    /// Brings the device registry in line with the devices just read, before the fleet
    /// snapshot that lists them goes out. A failure is logged, and fleet snapshots are
    /// published regardless; returns the tenants whose registry entries may be behind, which
    /// the next safety-net poll reads again.
    async fn sync_registry(
        &mut self,
        devices: &BTreeMap<TenantId, Vec<fleet::DeviceRow>>,
    ) -> HashSet<TenantId> {
        let ours = || devices.keys().filter(|t| self.tenants.contains(*t));
        if self.registry.is_none() {
            match DeviceRegistry::open(&self.js, self.config.stream_replicas).await {
                Ok(registry) => self.registry = Some(registry),
                Err(e) => {
                    self.failures
                        .report(&crate::streams::bucket_stream(), false);
                    self.metrics.error(Stage::Registry);
                    tracing::warn!(error = %e, "cannot open the device registry");
                    return ours().cloned().collect();
                }
            }
        }
        let Some(registry) = self.registry.as_mut() else {
            return ours().cloned().collect();
        };
        if let Err(e) = registry.read_ahead(ours()).await {
            self.metrics.error(Stage::Registry);
            tracing::warn!(error = %e, "cannot read the device registry ahead; reading it per tenant");
        }
        let mut behind = HashSet::new();
        for (tenant, rows) in devices {
            if !self.tenants.contains(tenant) {
                continue;
            }
            let ids = rows.iter().map(|r| r.device_id.as_str());
            if let Err(e) = registry.sync(tenant, ids).await {
                self.failures
                    .report(&crate::streams::bucket_stream(), e.store_failed());
                self.metrics.error(Stage::Registry);
                tracing::warn!(%tenant, error = %e, "cannot update the device registry");
                behind.insert(tenant.clone());
            }
        }
        behind
    }

    fn report(&self, what: &str, r: Result<(), CycleError>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                if let CycleError::Publish(p) = &e {
                    // Every message the engine publishes goes to the state stream.
                    self.failures.report(STATE_STREAM, p.store_failed());
                }
                let stage = match e {
                    CycleError::Database(_) => Stage::Database,
                    CycleError::Publish(_) | CycleError::NatsDropped => Stage::Publish,
                };
                self.metrics.error(stage);
                tracing::warn!(error = %e, "{what} failed; retrying next cycle");
                false
            }
        }
    }

    /// Runs until `stop` is cancelled. `nats` tells when NATS reconnected; publishing pauses
    /// while it is down.
    pub async fn run(
        &mut self,
        changes: ChangeFeed,
        mut nats: watch::Receiver<LinkState>,
        stop: CancellationToken,
    ) {
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut telemetry = tokio::time::interval(self.config.telemetry_interval);
        telemetry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut deletions = match crate::streams::deletions(&self.js.client()).await {
            Ok(deletions) => deletions,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot watch for deleted streams; the safety-net poll looks for them"
                );
                futures::stream::select_all(Vec::new())
            }
        };
        let mut seen_connects = nats.borrow().connects;
        let mut resync_due = std::mem::take(&mut self.resync_due);
        // Whether to look for missing streams before the next cycle.
        let mut streams_due = resync_due;
        let mut turns = Turns::default();
        loop {
            let connected = nats.borrow().connected;
            // What is due is noted, then served in turn once nothing else is ready: a job due
            // again the moment it ends cannot starve the others.
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                changed = nats.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let state = *nats.borrow_and_update();
                    if state.connected && state.connects != seen_connects {
                        seen_connects = state.connects;
                        tracing::info!("NATS reconnected; republishing current state");
                        self.forget_published();
                        self.resync_pace.allow_now();
                        resync_due = true;
                        streams_due = true;
                    }
                }
                Some(advisory) = deletions.next(), if connected => {
                    self.deletion_announced(&advisory);
                    streams_due = true;
                    self.heal(&nats, &mut streams_due, &mut resync_due).await;
                }
                _ = telemetry.tick(), if connected && !turns.is_due(Job::Telemetry) => {
                    turns.note(Job::Telemetry);
                }
                _ = poll.tick(), if connected && !turns.is_due(Job::Poll) => turns.note(Job::Poll),
                () = changes.changed(), if connected && !turns.is_due(Job::Changes) => {
                    turns.note(Job::Changes);
                }
                () = std::future::ready(()), if connected && turns.any_due() => {
                    match turns.take() {
                        Some(Job::Telemetry) => {
                            self.heal(&nats, &mut streams_due, &mut resync_due).await;
                            let r = on_link(&nats, self.poll_telemetry()).await;
                            streams_due |= !self.report("telemetry poll", r);
                        }
                        Some(Job::Poll) => {
                            streams_due = self.check_streams(&nats, &mut resync_due).await;
                            if resync_due {
                                resync_due = self.resync(&nats, &mut streams_due).await;
                            } else {
                                let span = tracing::debug_span!("safety_net_poll");
                                let r = on_link(&nats, self.safety_net().instrument(span)).await;
                                resync_due = !self.report("safety-net poll", r);
                                streams_due |= resync_due;
                            }
                        }
                        Some(Job::Changes) => {
                            tokio::time::sleep(self.config.debounce).await;
                            let mut pending = changes.take();
                            self.forget_late(&mut pending).await;
                            // LISTEN back (after a database restart, say): a resync at once.
                            if pending.resync {
                                self.resync_pace.allow_now();
                            }
                            if pending.resync || pending.tenants || resync_due {
                                resync_due = self.resync(&nats, &mut streams_due).await;
                            } else {
                                let alerts: Vec<_> = pending.alerts.into_iter().collect();
                                let r = on_link(&nats, self.refresh_alerts(&alerts)).await;
                                resync_due |= !self.report("alerts refresh", r);
                                let fleet: Vec<_> = pending.fleet.into_iter().collect();
                                let r = on_link(&nats, self.refresh_fleet(&fleet)).await;
                                resync_due |= !self.report("fleet refresh", r);
                                // Failed, what the changes were for goes out with the resync
                                // of the next telemetry cycle, not the next safety-net poll.
                                streams_due |= resync_due;
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
}
