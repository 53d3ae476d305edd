//! The device registry: the devices each tenant has, as keys `<tenant>.<device>` of the
//! JetStream key-value bucket `PULSE_DEVICES`, so a gateway — which has no database — can
//! refuse a subscription to a device its tenant does not have before it subscribes on NATS.
//!
//! The active poller keeps it: every fleet read (on a device change, and in every safety poll)
//! lists all of a tenant's devices, and [`DeviceRegistry::sync`] puts the new ones and deletes
//! the gone ones; a deleted tenant's devices are deleted with it. Before a tenant's first sync,
//! a newly active poller reads that tenant's keys already there, so devices deleted while no
//! poller was active are removed too. A key written or deleted without an acknowledgement is
//! tried again on the tenant's next sync.
//!
//! Several deployments (or test databases) may share one NATS: the poller writes only the keys
//! of its own database's tenants and leaves the others alone. A few tenants' keys it reads one
//! tenant at a time (a consumer filtered to `<tenant>.>`), so what others keep in the bucket
//! is not sent to it. Many tenants at once (a poller becoming active) it reads in one pass over
//! the whole bucket ([`DeviceRegistry::read_ahead`]): the server looks at every key of the
//! bucket to start each filtered read, so one read per tenant would cost tenants × keys (with
//! 4,000 tenants of 3 devices, minutes before the first fleet message), where one pass costs
//! the keys once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::stream::PurgeErrorKind;
use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use pulse_proto::subject::DEVICES_BUCKET;
use pulse_proto::{DeviceId, TenantId};

/// The header that marks a key's entry as deleted (`DEL`) or purged (`PURGE`).
const KV_OPERATION: &str = "KV-Operation";
/// Writes in flight at once while syncing.
const CONCURRENCY: usize = 64;
/// A read of the bucket's keys gives up when the server sends nothing for this long: the fleet
/// read waits for it, and tries again at the next read when it fails.
const READ_STALL: Duration = Duration::from_secs(5);
/// At most this many tenants' keys are read one tenant at a time; see
/// [`DeviceRegistry::read_ahead`].
pub const PER_TENANT_READS: usize = 16;

/// How long a deleted key's marker stays in the bucket. A watcher of the bucket away for less
/// still sees the deletion; past it, the marker is purged as the bucket is read, or the marker
/// of every device ever removed would stay for good (the bucket keeps a key's last message),
/// and every activation would read them all.
pub const MARKERS_KEPT: Duration = Duration::from_secs(30 * 60);

/// Most markers purged by one read of the bucket; the rest go at a later read.
const MARKERS_PURGED_PER_READ: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot create or update the {DEVICES_BUCKET} bucket: {0}")]
    Create(String),
    #[error("cannot list the keys of {tenant} in {DEVICES_BUCKET}: {error}")]
    Keys { tenant: TenantId, error: String },
    #[error("cannot read the keys of {DEVICES_BUCKET}: {0}")]
    Bucket(String),
    #[error("{failed} of {total} device registry writes failed, e.g. {first}")]
    Writes {
        failed: usize,
        total: usize,
        first: String,
        /// Whether the bucket's storage refused one ([`pulse_common::nats::store_failed`]).
        store_failed: bool,
    },
}

impl RegistryError {
    /// Whether the bucket's storage refused a write: it needs creating again.
    pub fn store_failed(&self) -> bool {
        matches!(
            self,
            Self::Writes {
                store_failed: true,
                ..
            }
        )
    }
}

/// Creates the bucket or brings its configuration up to date.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, RegistryError> {
    pulse_common::device_bucket::ensure(js, replicas)
        .await
        .map_err(RegistryError::Create)
}

/// The registry as this poller last wrote it.
pub struct DeviceRegistry {
    store: kv::Store,
    /// Where a removed device's last reading is purged from `PULSE_STATE`.
    js: jetstream::Context,
    /// The devices listed for each tenant synced so far.
    known: HashMap<TenantId, HashSet<DeviceId>>,
    /// How many times a tenant's keys were read from the bucket.
    reads: u64,
    /// How many times the whole bucket was read.
    bucket_reads: u64,
    /// How long deletion markers are kept ([`MARKERS_KEPT`]).
    markers_kept: Duration,
    /// Deletion markers purged so far.
    markers_purged: AtomicU64,
}

impl DeviceRegistry {
    /// Opens the bucket, creating it or bringing its configuration up to date. Nothing is read
    /// yet: each tenant's keys are read before its first sync.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, RegistryError> {
        let store = ensure(js, replicas).await?;
        Ok(Self {
            store,
            js: js.clone(),
            known: HashMap::new(),
            reads: 0,
            bucket_reads: 0,
            markers_kept: MARKERS_KEPT,
            markers_purged: Default::default(),
        })
    }

    /// Keeps deletion markers `kept` instead of [`MARKERS_KEPT`] (tests cannot wait that long).
    pub fn keep_markers_for(mut self, kept: Duration) -> Self {
        self.markers_kept = kept;
        self
    }

    /// Deletion markers this registry purged from the bucket.
    pub fn markers_purged(&self) -> u64 {
        self.markers_purged.load(Ordering::Relaxed)
    }

    /// Devices listed for `tenant`.
    pub fn devices(&self, tenant: &TenantId) -> usize {
        self.known.get(tenant).map_or(0, HashSet::len)
    }

    /// How many times a tenant's keys were read from the bucket: once per tenant, and again
    /// only after a read that failed.
    pub fn tenant_reads(&self) -> u64 {
        self.reads
    }

    /// How many times the whole bucket was read (see [`Self::read_ahead`]).
    pub fn bucket_reads(&self) -> u64 {
        self.bucket_reads
    }

    /// Makes the registry list exactly `devices` for `tenant`. Ids that break the id rule
    /// cannot be subscribed to and are left out.
    pub async fn sync<'a>(
        &mut self,
        tenant: &TenantId,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RegistryError> {
        self.write(tenant, devices, true).await
    }

    /// [`Self::sync`]; `purge_readings`: see [`Self::apply`].
    async fn write<'a>(
        &mut self,
        tenant: &TenantId,
        devices: impl IntoIterator<Item = &'a str>,
        purge_readings: bool,
    ) -> Result<(), RegistryError> {
        let wanted: HashSet<DeviceId> = devices
            .into_iter()
            .filter_map(|d| DeviceId::parse(d).ok())
            .collect();
        let known = match self.known.remove(tenant) {
            Some(known) => known,
            None => {
                self.reads += 1;
                self.listed(tenant).await?
            }
        };
        let added: Vec<DeviceId> = wanted.difference(&known).cloned().collect();
        let removed: Vec<DeviceId> = known.difference(&wanted).cloned().collect();
        let mut listed = known;
        let result = self
            .apply(tenant, added, removed, &mut listed, purge_readings)
            .await;
        // Kept even when empty: a tenant without devices is read from the bucket once, not on
        // every fleet read.
        self.known.insert(tenant.clone(), listed);
        result
    }

    /// Forgets what it knew of `tenant`'s keys (purged from the bucket by other means), so
    /// that its next sync reads them.
    pub fn forget(&mut self, tenant: &TenantId) {
        self.known.remove(tenant);
    }

    /// Removes every device of `tenants`, which were deleted (their subjects are purged with
    /// the tenant's, [`crate::streams::purge_tenant`]).
    pub async fn remove_tenants(&mut self, tenants: &[TenantId]) -> Result<(), RegistryError> {
        let mut result = Ok(());
        for tenant in tenants {
            let r = self.write(tenant, std::iter::empty(), false).await;
            if r.is_ok() {
                self.known.remove(tenant);
            }
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Reads ahead the keys of every tenant of `tenants` not read yet, so that their syncs
    /// read nothing. Up to [`PER_TENANT_READS`] of them are left to be read one by one as
    /// they sync; more are read in one pass over the whole bucket, since the server looks at
    /// every key of the bucket to start each tenant's read. On an error nothing is kept, and
    /// each sync reads its tenant's keys itself.
    pub async fn read_ahead<'a>(
        &mut self,
        tenants: impl IntoIterator<Item = &'a TenantId>,
    ) -> Result<(), RegistryError> {
        let unread: HashSet<&TenantId> = tenants
            .into_iter()
            .filter(|t| !self.known.contains_key(*t))
            .collect();
        if unread.len() <= PER_TENANT_READS {
            return Ok(());
        }
        self.bucket_reads += 1;
        let mut listed = self
            .read(format!("{}>", self.store.prefix), |t| unread.contains(t))
            .await
            .map_err(RegistryError::Bucket)?;
        for tenant in unread {
            let devices = listed.remove(tenant).unwrap_or_default();
            self.known.insert(tenant.clone(), devices);
        }
        Ok(())
    }

    /// The devices the bucket lists for `tenant`.
    async fn listed(&self, tenant: &TenantId) -> Result<HashSet<DeviceId>, RegistryError> {
        let filter = format!("{}{tenant}.>", self.store.prefix);
        match self.read(filter, |t| t == tenant).await {
            Ok(mut listed) => Ok(listed.remove(tenant).unwrap_or_default()),
            Err(error) => Err(RegistryError::Keys {
                tenant: tenant.clone(),
                error,
            }),
        }
    }

    /// The devices of each tenant `wanted` picks among the keys `filter` matches: the newest
    /// entry of each key, read headers only, deleted keys left out. Gives up when the server
    /// sends nothing for [`READ_STALL`].
    async fn read(
        &self,
        filter: String,
        wanted: impl Fn(&TenantId) -> bool,
    ) -> Result<HashMap<TenantId, HashSet<DeviceId>>, String> {
        let prefix = &self.store.prefix;
        // A pull consumer: the server sends only what is asked for, once the client listens.
        // A push consumer starts sending as it is created, before the client's subscription
        // is in place, and what it sent meanwhile is gone until its next heartbeat (5 s).
        let config = pull::OrderedConfig {
            description: Some(format!("pulse-poller registry read of {filter}")),
            filter_subject: filter,
            headers_only: true,
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        };
        let consumer = tokio::time::timeout(READ_STALL, self.store.stream.create_consumer(config))
            .await
            .map_err(|_| format!("no consumer created within {READ_STALL:?}"))?
            .map_err(|e| e.to_string())?;
        let mut read = 0_u64;
        let mut listed: HashMap<TenantId, HashSet<DeviceId>> = HashMap::new();
        // Deletion markers published before this are old enough to purge.
        let stale_before = time::OffsetDateTime::now_utc() - self.markers_kept;
        let mut stale = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(listed);
        }
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let message = tokio::time::timeout(READ_STALL, messages.next())
                .await
                .map_err(|_| format!("nothing came for {READ_STALL:?} after {read} keys"))?
                .ok_or("the read ended early")?
                .map_err(|e| e.to_string())?;
            let info = message.info().map_err(|e| e.to_string())?;
            let (pending, sequence, published) =
                (info.pending, info.stream_sequence, info.published);
            read += 1;
            let removed = message
                .headers
                .as_ref()
                .and_then(|h| h.get(KV_OPERATION))
                .is_some_and(|op| op.as_str() != "PUT");
            let key = message.subject.strip_prefix(prefix.as_str());
            if !removed
                && let Some((tenant, device)) = key.and_then(parse_key)
                && wanted(&tenant)
            {
                listed.entry(tenant).or_default().insert(device);
            }
            if removed && stale.len() < MARKERS_PURGED_PER_READ && published < stale_before {
                stale.push((message.subject.to_string(), sequence));
            }
            if pending == 0 {
                break;
            }
        }
        self.purge_markers(stale).await;
        Ok(listed)
    }

    /// Purges the deletion markers `stale` (subject, stream sequence), each only up to its own
    /// sequence: a key written again meanwhile keeps its new value. A purge that fails is tried
    /// at a later read.
    async fn purge_markers(&self, stale: Vec<(String, u64)>) {
        for (subject, sequence) in stale {
            let purged = self
                .store
                .stream
                .purge()
                .filter(subject.as_str())
                .sequence(sequence + 1)
                .await;
            match purged {
                Ok(_) => {
                    self.markers_purged.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(%subject, error = %e, "cannot purge a deletion marker yet");
                    return;
                }
            }
        }
    }

    /// Writes the changes, `CONCURRENCY` at a time; `listed` ends as what the bucket holds.
    /// With `purge_readings`, a removed device's last reading is purged from `PULSE_STATE`
    /// before its key is deleted (so a failed purge is tried again at the next sync): kept, it
    /// would stay there for good, a device nobody has, for whoever reads the subject.
    async fn apply(
        &self,
        tenant: &TenantId,
        added: Vec<DeviceId>,
        removed: Vec<DeviceId>,
        listed: &mut HashSet<DeviceId>,
        purge_readings: bool,
    ) -> Result<(), RegistryError> {
        let total = added.len() + removed.len();
        if total == 0 {
            return Ok(());
        }
        let (store, js) = (&self.store, &self.js);
        let writes = added
            .into_iter()
            .map(|d| (true, d))
            .chain(removed.into_iter().map(|d| (false, d)))
            .map(|(put, device)| async move {
                let key = pulse_proto::subject::device_key(tenant, &device);
                let failed = |e: &(dyn std::error::Error + 'static)| {
                    (pulse_common::nats::store_failed(e), e.to_string())
                };
                let r = if put {
                    store
                        .put(&key, bytes::Bytes::new())
                        .await
                        .map(drop)
                        .map_err(|e| failed(&e))
                } else if purge_readings && let Err(e) = purge_reading(js, tenant, &device).await {
                    Err((false, e))
                } else {
                    store.delete(&key).await.map_err(|e| failed(&e))
                };
                (put, device, r)
            });
        let results: Vec<_> = futures::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        let mut first = None;
        let mut store_failed = false;
        for (put, device, r) in results {
            match r {
                Ok(()) if put => {
                    listed.insert(device);
                }
                Ok(()) => {
                    listed.remove(&device);
                }
                Err((refused, e)) => {
                    failed += 1;
                    store_failed |= refused;
                    first.get_or_insert(format!("{tenant}.{device}: {e}"));
                }
            }
        }
        match first {
            None => Ok(()),
            Some(first) => Err(RegistryError::Writes {
                failed,
                total,
                first,
                store_failed,
            }),
        }
    }
}

/// Purges `device`'s last reading from `PULSE_STATE`.
async fn purge_reading(
    js: &jetstream::Context,
    tenant: &TenantId,
    device: &DeviceId,
) -> Result<(), String> {
    let subject = pulse_proto::Subject::Telemetry(tenant.clone(), device.clone()).to_string();
    let stream = js
        .get_stream_no_info(pulse_proto::subject::STATE_STREAM)
        .await
        .map_err(|e| format!("cannot purge {subject}: {e}"))?;
    match stream.purge().filter(subject.as_str()).await {
        Ok(_) => Ok(()),
        // No stream, no reading to purge (it is created before any reading is published).
        Err(e)
            if matches!(e.kind(), PurgeErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("cannot purge {subject}: {e}")),
    }
}

fn parse_key(key: &str) -> Option<(TenantId, DeviceId)> {
    let (tenant, device) = key.split_once('.')?;
    Some((TenantId::parse(tenant).ok()?, DeviceId::parse(device).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_one_tenant_and_one_device() {
        let (t, d) = parse_key("acme.dev-1").unwrap();
        assert_eq!((t.as_str(), d.as_str()), ("acme", "dev-1"));
        assert!(parse_key("acme").is_none());
        assert!(parse_key("acme.dev.1").is_none());
        assert!(parse_key(".dev").is_none());
    }
}
