//! Which devices a tenant has, read from the device registry (the JetStream key-value bucket
//! `PULSE_DEVICES`, kept by the active poller from PostgreSQL), so a client can subscribe only
//! to its own tenant's devices and a made-up id costs no NATS subscription.
//!
//! A subject already in use on this instance was checked when it was first subscribed, so
//! only the first subscriber of a device per gateway costs a read. When the registry cannot
//! be read, the subscribe is refused as `unavailable` (the client retries), never allowed
//! unchecked.
//!
//! A key read is a direct get, which any replica of the bucket answers, and a replica can be a
//! moment behind its leader ([`StreamReads`]): a device the poller has just listed (and
//! announced in the tenant's fleet message) could be taken for unknown. So a device a replica
//! does not have is asked of the bucket's leader before it is refused.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use pulse_proto::subject::{DEVICES_BUCKET, device_key};
use pulse_proto::{DeviceId, TenantId};

use crate::stream_reads::StreamReads;

/// How long one read of the registry may take (it runs beside the connection's loop; past
/// this the client is told `unavailable` and retries).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("cannot open the device registry: {0}")]
    Open(String),
    #[error("cannot read the device registry: {0}")]
    Read(String),
}

#[derive(Clone)]
pub struct Devices {
    js: jetstream::Context,
    store: std::sync::Arc<tokio::sync::OnceCell<kv::Store>>,
    /// The bucket's stream, for reads from its leader.
    reads: std::sync::Arc<StreamReads>,
}

impl Devices {
    pub fn new(js: jetstream::Context) -> Self {
        Self {
            reads: std::sync::Arc::new(StreamReads::new(
                js.clone(),
                format!("KV_{DEVICES_BUCKET}"),
            )),
            js,
            store: Default::default(),
        }
    }

    /// Whether `tenant` has `device`.
    pub async fn has(&self, tenant: &TenantId, device: &DeviceId) -> Result<bool, DevicesError> {
        let store = self
            .store
            .get_or_try_init(|| async {
                match tokio::time::timeout(READ_TIMEOUT, self.js.get_key_value(DEVICES_BUCKET))
                    .await
                {
                    Ok(Ok(store)) => Ok(store),
                    Ok(Err(e)) => Err(DevicesError::Open(e.to_string())),
                    Err(_) => Err(DevicesError::Open("timed out".into())),
                }
            })
            .await?;
        let key = device_key(tenant, device);
        match tokio::time::timeout(READ_TIMEOUT, store.get(&key)).await {
            Ok(Ok(Some(_))) => Ok(true),
            Ok(Ok(None)) => Ok(self.listed_by_leader(&key).await),
            Ok(Err(e)) => Err(DevicesError::Read(e.to_string())),
            Err(_) => Err(DevicesError::Read("timed out".into())),
        }
    }

    /// Whether the bucket's leader holds `key` (a value, not a deletion). A leader that cannot
    /// be asked leaves the answer of the replica that said no.
    async fn listed_by_leader(&self, key: &str) -> bool {
        let read = self
            .reads
            .last(&format!("$KV.{DEVICES_BUCKET}.{key}"))
            .await;
        match read {
            Ok((Some(message), _)) => !is_deletion(&message.headers),
            Ok((None, _)) => false,
            Err(e) => {
                tracing::debug!(key, error = %e, "the device registry's leader was not asked");
                false
            }
        }
    }
}

/// Whether a bucket message marks its key deleted (`KV-Operation: DEL` or `PURGE`).
fn is_deletion(headers: &async_nats::HeaderMap) -> bool {
    headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}
