//! Which devices a tenant has, read from the device registry (the JetStream key-value bucket
//! `PULSE_DEVICES`, kept by the active poller from PostgreSQL), so a client can subscribe only
//! to its own tenant's devices and a made-up id costs no NATS subscription.
//!
//! A subject already in use on this instance was checked when it was first subscribed, so
//! only the first subscriber of a device per gateway costs a read. When the registry cannot
//! be read, the subscribe is refused as `unavailable` (the client retries), never allowed
//! unchecked.
//!
//! A key is read straight from the bucket's stream, with no key-value handle: opening one asks
//! for the stream's info, which only its leader gives, so a gateway's first check would wait
//! out a leader election. A read is a direct get, which any replica of the bucket answers, and
//! a replica can be a moment behind its leader ([`StreamReads`]): a device the poller has just
//! listed (and announced in the tenant's fleet message) could be taken for unknown. So a
//! device a replica does not have is asked of the bucket's leader before it is refused, and
//! while the leader cannot be asked (an election) the client is told `unavailable`, not
//! `unknown_device`: a "no" only a replica gave may be a device listed a moment ago, and a
//! client told it is unknown would not ask again. A read no replica answered is made once
//! more before the client is told `unavailable`.

use pulse_proto::subject::{DEVICES_BUCKET, DEVICES_STREAM, device_key};
use pulse_proto::{DeviceId, TenantId};

use crate::stream_reads::{ReadError, Source, StreamReads};

/// How long one read of a key may take before it is made again, once: a direct get is
/// answered in milliseconds, but right after a node of the cluster went one can go
/// unanswered. Two unanswered reads tell the client `unavailable` (it retries).
const KEY_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot read the device registry: {0}")]
pub struct DevicesError(#[from] ReadError);

#[derive(Clone)]
pub struct Devices {
    /// The bucket's stream.
    reads: std::sync::Arc<StreamReads>,
}

impl Devices {
    pub fn new(js: async_nats::jetstream::Context) -> Self {
        Self {
            reads: std::sync::Arc::new(StreamReads::new(js, DEVICES_STREAM.to_owned())),
        }
    }

    /// Whether `tenant` has `device`.
    pub async fn has(&self, tenant: &TenantId, device: &DeviceId) -> Result<bool, DevicesError> {
        let subject = format!("$KV.{DEVICES_BUCKET}.{}", device_key(tenant, device));
        let mut replica = self.reads.last_from_replica(&subject, KEY_READ_WAIT).await;
        if let Err(ReadError::Timeout(_)) = replica {
            replica = self.reads.last_from_replica(&subject, KEY_READ_WAIT).await;
        }
        match replica? {
            Some(message) if !is_deletion(&message.headers) => Ok(true),
            _ => self.listed_by_leader(&subject).await,
        }
    }

    /// Whether the bucket's leader holds `subject`'s key (a value, not a deletion). When the
    /// leader cannot be asked, a replica's value still counts, but its "no" is not taken as
    /// the answer: [`ReadError::LeaderAway`].
    async fn listed_by_leader(&self, subject: &str) -> Result<bool, DevicesError> {
        match self.reads.last(subject).await? {
            (Some(message), _) if !is_deletion(&message.headers) => Ok(true),
            (_, Source::Leader) => Ok(false),
            (_, Source::Replica) => {
                tracing::debug!(subject, "only a replica said the device is not listed");
                Err(ReadError::LeaderAway.into())
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
