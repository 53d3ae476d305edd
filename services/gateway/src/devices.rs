//! Which devices a tenant has, read from the device registry (the JetStream key-value bucket
//! `PULSE_DEVICES`, kept by the active poller from PostgreSQL), so a client can subscribe only
//! to its own tenant's devices and a made-up id costs no NATS subscription.
//!
//! A subject already in use on this instance was checked when it was first subscribed, so
//! only the first subscriber of a device per gateway costs a read. When the registry cannot
//! be read, the subscribe is refused as `unavailable` (the client retries), never allowed
//! unchecked.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use pulse_proto::subject::{DEVICES_BUCKET, device_key};
use pulse_proto::{DeviceId, TenantId};

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
}

impl Devices {
    pub fn new(js: jetstream::Context) -> Self {
        Self {
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
        match tokio::time::timeout(READ_TIMEOUT, store.get(device_key(tenant, device))).await {
            Ok(Ok(value)) => Ok(value.is_some()),
            Ok(Err(e)) => Err(DevicesError::Read(e.to_string())),
            Err(_) => Err(DevicesError::Read("timed out".into())),
        }
    }
}
