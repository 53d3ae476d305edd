//! The device registry: the devices each tenant has, as keys `<tenant>.<device>` of the
//! JetStream key-value bucket `PULSE_DEVICES`, so a gateway — which has no database — can
//! refuse a subscription to a device its tenant does not have before it subscribes on NATS.
//!
//! The active poller keeps it: every fleet read (on a device change, and in every safety poll)
//! lists all of a tenant's devices, and [`DeviceRegistry::sync`] puts the new ones and deletes
//! the gone ones; a deleted tenant's devices are deleted with it. A newly active poller first
//! reads the keys already there, so devices deleted while no poller was active are removed too.
//! A key written or deleted without an acknowledgement is tried again on the tenant's next sync.
//! Keys of tenants the poller's database does not have are left alone: several deployments
//! (or test databases) may share one NATS.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::{StreamExt as _, TryStreamExt as _};
use pulse_proto::subject::DEVICES_BUCKET;
use pulse_proto::{DeviceId, TenantId};

/// Writes in flight at once while syncing.
const CONCURRENCY: usize = 64;
/// How long opening the bucket or listing its keys may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot create or update the {DEVICES_BUCKET} bucket: {0}")]
    Create(String),
    #[error("cannot list the keys of {DEVICES_BUCKET}: {0}")]
    Keys(String),
    #[error("{failed} of {total} device registry writes failed, e.g. {first}")]
    Writes {
        failed: usize,
        total: usize,
        first: String,
    },
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
    known: HashMap<TenantId, HashSet<DeviceId>>,
}

impl DeviceRegistry {
    /// Opens the bucket (creating it) and reads which devices it already lists.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, RegistryError> {
        let store = ensure(js, replicas).await?;
        let list = async {
            let keys = store.keys().await.map_err(|e| e.to_string())?;
            keys.map_err(|e| e.to_string())
                .try_collect::<Vec<String>>()
                .await
        };
        let keys = match tokio::time::timeout(OPEN_TIMEOUT, list).await {
            Ok(Ok(keys)) => keys,
            Ok(Err(e)) => return Err(RegistryError::Keys(e)),
            Err(_) => return Err(RegistryError::Keys("timed out".into())),
        };
        let mut known: HashMap<TenantId, HashSet<DeviceId>> = HashMap::new();
        for key in keys {
            if let Some((tenant, device)) = parse_key(&key) {
                known.entry(tenant).or_default().insert(device);
            }
        }
        Ok(Self { store, known })
    }

    /// Devices listed for `tenant`.
    pub fn devices(&self, tenant: &TenantId) -> usize {
        self.known.get(tenant).map_or(0, HashSet::len)
    }

    /// Makes the registry list exactly `devices` for `tenant`. Ids that break the id rule
    /// cannot be subscribed to and are left out.
    pub async fn sync<'a>(
        &mut self,
        tenant: &TenantId,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RegistryError> {
        let wanted: HashSet<DeviceId> = devices
            .into_iter()
            .filter_map(|d| DeviceId::parse(d).ok())
            .collect();
        let known = self.known.remove(tenant).unwrap_or_default();
        let added: Vec<DeviceId> = wanted.difference(&known).cloned().collect();
        let removed: Vec<DeviceId> = known.difference(&wanted).cloned().collect();
        let mut listed = known;
        let result = self.apply(tenant, added, removed, &mut listed).await;
        if !listed.is_empty() {
            self.known.insert(tenant.clone(), listed);
        }
        result
    }

    /// Forgets, in memory only, the listed devices of tenants not in `tenants`: they belong to
    /// another database's poller sharing the bucket, or to a tenant deleted while no poller was
    /// active (whose keys then stay until written again).
    pub fn keep_tenants(&mut self, tenants: &BTreeSet<TenantId>) {
        self.known.retain(|t, _| tenants.contains(t));
    }

    /// Removes every device of `tenants`, which were deleted.
    pub async fn remove_tenants(&mut self, tenants: &[TenantId]) -> Result<(), RegistryError> {
        let mut result = Ok(());
        for tenant in tenants {
            let r = self.sync(tenant, std::iter::empty()).await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Writes the changes, `CONCURRENCY` at a time; `listed` ends as what the bucket holds.
    async fn apply(
        &self,
        tenant: &TenantId,
        added: Vec<DeviceId>,
        removed: Vec<DeviceId>,
        listed: &mut HashSet<DeviceId>,
    ) -> Result<(), RegistryError> {
        let total = added.len() + removed.len();
        if total == 0 {
            return Ok(());
        }
        let store = &self.store;
        let writes = added
            .into_iter()
            .map(|d| (true, d))
            .chain(removed.into_iter().map(|d| (false, d)))
            .map(|(put, device)| async move {
                let key = pulse_proto::subject::device_key(tenant, &device);
                let r = if put {
                    store
                        .put(&key, bytes::Bytes::new())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                } else {
                    store.delete(&key).await.map_err(|e| e.to_string())
                };
                (put, device, r)
            });
        let results: Vec<_> = futures::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        let mut first = None;
        for (put, device, r) in results {
            match r {
                Ok(()) if put => {
                    listed.insert(device);
                }
                Ok(()) => {
                    listed.remove(&device);
                }
                Err(e) => {
                    failed += 1;
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
            }),
        }
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
