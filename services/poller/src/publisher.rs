//! Publishing to NATS through JetStream: each message is serialized once, carries its `seq` and
//! trace context in headers, and counts as published only once JetStream acknowledged it.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use pulse_proto::{Subject, TenantId};

use crate::fence::{Fence, Verdict};
use crate::metrics::{Kind, Metrics};

/// Most publishes awaiting their acknowledgement at once.
const MAX_IN_FLIGHT: usize = 512;
/// Room left in `max_payload` for the headers a message carries (seq, message id, trace).
const HEADER_ROOM: usize = 4 * 1024;
/// How long an acknowledgement may take before the publish counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One message ready to go.
pub struct Outgoing<K> {
    /// What the caller needs back to record success (e.g. the tenant and content hash).
    pub key: K,
    pub subject: Subject,
    pub seq: u64,
    pub payload: Bytes,
    /// `Nats-Msg-Id`, for messages JetStream must store once however often they are sent.
    pub msg_id: Option<String>,
}

impl<K> Outgoing<K> {
    /// A snapshot for `subject`, listing fewer of its `items` when all of them would not fit
    /// in `limit` bytes (see [`encode_fitting`]); with how many were left out.
    pub fn fitted<T: serde::Serialize, I>(
        key: K,
        subject: Subject,
        seq: u64,
        message: &mut T,
        limit: usize,
        items: impl Fn(&mut T) -> &mut Vec<I>,
    ) -> Result<(Self, usize), PublishError> {
        let (payload, left_out) = encode_fitting(message, limit, items)?;
        let out = Self {
            key,
            subject,
            seq,
            payload,
            msg_id: None,
        };
        Ok((out, left_out))
    }

    /// `message` serialized, for `subject`, without a `Nats-Msg-Id`.
    pub fn new(
        key: K,
        subject: Subject,
        seq: u64,
        message: &impl serde::Serialize,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            key,
            subject,
            seq,
            payload: encode(message)?,
            msg_id: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot serialize message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("publish failed: {0}")]
    Publish(String),
    /// The stream exists but could not store the message (JetStream error 10077): its storage
    /// is broken, and stays so until the stream is created again
    /// ([`pulse_common::nats::store_failed`]).
    #[error("the stream cannot store: {0}")]
    StoreFailed(String),
    #[error("no acknowledgement within {ACK_TIMEOUT:?}")]
    AckTimeout,
    /// The state stream holds a newer message of the subject than ours: another poller
    /// published it (active at once, or with its clock ahead).
    #[error("{subject}: the stream holds seq {theirs}, newer than ours ({ours})")]
    Superseded {
        subject: String,
        theirs: u64,
        ours: u64,
    },
}

impl PublishError {
    /// Whether the stream's storage refused the message ([`PublishError::StoreFailed`]).
    pub fn store_failed(&self) -> bool {
        matches!(self, Self::StoreFailed(_))
    }
}

pub fn encode<T: serde::Serialize>(message: &T) -> Result<Bytes, PublishError> {
    Ok(Bytes::from(serde_json::to_vec(message)?))
}

/// The largest payload the NATS server takes with room for our headers: its `max_payload`
/// (1 MiB by default) less `HEADER_ROOM`.
pub fn payload_limit(js: &jetstream::Context) -> usize {
    js.client()
        .server_info()
        .max_payload
        .saturating_sub(HEADER_ROOM)
}

/// Serializes a snapshot, listing fewer of its items (keeping the first ones) when the whole
/// list would not fit in `limit` bytes. Returns the payload and how many items were left out;
/// the snapshot's counts still cover every item, so a reader sees that the list is partial.
/// When not even an empty list fits, the payload is returned as is and the publish fails.
pub fn encode_fitting<T: serde::Serialize, I>(
    message: &mut T,
    limit: usize,
    items: impl Fn(&mut T) -> &mut Vec<I>,
) -> Result<(Bytes, usize), PublishError> {
    let listed = items(message).len();
    let mut payload = encode(message)?;
    while payload.len() > limit && !items(message).is_empty() {
        let list = items(message);
        // Shrink in proportion to the excess, a little more, so one or two rounds suffice.
        let keep =
            (list.len() as u128 * limit as u128 * 95 / (payload.len() as u128 * 100)) as usize;
        list.truncate(keep.min(list.len() - 1));
        payload = encode(message)?;
    }
    Ok((payload, listed - items(message).len()))
}

/// Publishes one snapshot per tenant, and records in `published` what went out for each
/// tenant whose message JetStream acknowledged, so an unchanged one is not sent again. A tenant
/// whose message was not acknowledged is forgotten: an ack that timed out may still have been
/// stored, so the stream's last message is unknown and the next cycle sends the tenant's state
/// whatever it is, even back to what was recorded before.
pub async fn publish_snapshots<M>(
    js: &jetstream::Context,
    metrics: &Metrics,
    kind: Kind,
    batch: Vec<Outgoing<(TenantId, M)>>,
    published: &mut HashMap<TenantId, M>,
    fence: &mut Fence,
) -> Result<(), PublishError> {
    let sent: Vec<TenantId> = batch.iter().map(|out| out.key.0.clone()).collect();
    let (done, err) = publish_all(js, batch, Some(fence)).await;
    metrics.published(kind, done.len() as u64);
    if done.len() < sent.len() {
        for tenant in &sent {
            published.remove(tenant);
        }
    }
    published.extend(done);
    err.map_or(Ok(()), Err)
}

/// Publishes a batch, pipelined, and returns the keys of the acknowledged messages together
/// with the first error, if any. A message that failed is simply not in the returned list: the
/// caller keeps it marked unpublished and retries on its next cycle. A message too big for the
/// server fails alone (the others of the batch still go out); any other refusal ends the batch.
/// With a `fence` (snapshots of the state stream), each message expects the subject's last
/// stored message to be this poller's, and refusals are settled by it ([`Fence`]).
pub async fn publish_all<K>(
    js: &jetstream::Context,
    batch: Vec<Outgoing<K>>,
    mut fence: Option<&mut Fence>,
) -> (Vec<K>, Option<PublishError>) {
    let mut outcome = Outcome::with_capacity(batch.len());
    let mut pending = FuturesUnordered::new();
    for out in batch {
        let expected = fence.as_deref().and_then(|f| f.expected(&out.subject));
        let headers = headers(&out, expected);
        match js
            .publish_with_headers(out.subject.to_string(), headers, out.payload.clone())
            .await
        {
            Ok(ack) => pending.push(async move { (out, acked(ack).await) }),
            Err(e) => {
                let too_big = e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded;
                outcome.failed(failure(&e));
                if !too_big {
                    break;
                }
            }
        }
        while pending.len() >= MAX_IN_FLIGHT {
            if let Some(r) = pending.next().await {
                outcome.take(r, fence.as_deref_mut());
            }
        }
    }
    while let Some(r) = pending.next().await {
        outcome.take(r, fence.as_deref_mut());
    }
    if let Some(fence) = fence {
        for out in std::mem::take(&mut outcome.refused) {
            match settle(js, fence, out).await {
                Ok(key) => outcome.done.push(key),
                Err(e) => outcome.failed(e),
            }
        }
    }
    (outcome.done, outcome.first_error)
}

/// Settles a publish the fence's expectation made JetStream refuse ([`Fence::refused`]);
/// returns its key once ours is stored.
async fn settle<K>(
    js: &jetstream::Context,
    fence: &mut Fence,
    out: Outgoing<K>,
) -> Result<K, PublishError> {
    let verdict = fence
        .refused(js, &out.subject, out.seq)
        .await
        .map_err(PublishError::Publish)?;
    match verdict {
        Verdict::Stored => Ok(out.key),
        Verdict::Newer { theirs } => Err(PublishError::Superseded {
            subject: out.subject.to_string(),
            theirs,
            ours: out.seq,
        }),
        Verdict::Replace { expected } => {
            let sequence = send(js, &out, expected).await?;
            fence.stored(out.subject, sequence);
            Ok(out.key)
        }
    }
}

/// What became of a batch's messages so far.
struct Outcome<K> {
    done: Vec<K>,
    /// Refused by the fence's expectation, to be settled by it.
    refused: Vec<Outgoing<K>>,
    first_error: Option<PublishError>,
}

impl<K> Outcome<K> {
    fn with_capacity(n: usize) -> Self {
        Self {
            done: Vec::with_capacity(n),
            refused: Vec::new(),
            first_error: None,
        }
    }

    fn take(
        &mut self,
        (out, acked): (Outgoing<K>, Result<u64, Failed>),
        fence: Option<&mut Fence>,
    ) {
        match (acked, fence) {
            (Ok(sequence), fence) => {
                if let Some(fence) = fence {
                    fence.stored(out.subject, sequence);
                }
                self.done.push(out.key);
            }
            (Err(Failed::WrongLastSequence), Some(_)) => self.refused.push(out),
            (Err(failed), _) => self.failed(failed.into()),
        }
    }

    fn failed(&mut self, e: PublishError) {
        self.first_error.get_or_insert(e);
    }
}

/// Publishes one message and waits for its acknowledgement: the stream sequence it was
/// stored as. With `expected`, JetStream stores it only if the subject's last message is that
/// sequence.
async fn send<K>(
    js: &jetstream::Context,
    out: &Outgoing<K>,
    expected: Option<u64>,
) -> Result<u64, PublishError> {
    let publish = js.publish_with_headers(
        out.subject.to_string(),
        headers(out, expected),
        out.payload.clone(),
    );
    let ack = publish.await.map_err(|e| failure(&e))?;
    acked(ack).await.map_err(PublishError::from)
}

/// The stream sequence JetStream stored a publish as, once it says so within [`ACK_TIMEOUT`].
async fn acked(ack: jetstream::context::PublishAckFuture) -> Result<u64, Failed> {
    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
        Ok(Ok(ack)) => Ok(ack.sequence),
        Ok(Err(e)) => Err(Failed::from(e)),
        Err(_) => Err(Failed::Other(PublishError::AckTimeout)),
    }
}

/// The headers of `out`: its `seq`, its message id, the trace context, and the subject's
/// last stream sequence it expects, if any.
fn headers<K>(out: &Outgoing<K>, expected: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(pulse_proto::headers::SEQ, out.seq.to_string().as_str());
    if let Some(id) = &out.msg_id {
        headers.insert(pulse_proto::headers::MSG_ID, id.as_str());
    }
    if let Some(sequence) = expected {
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            sequence.to_string().as_str(),
        );
    }
    pulse_common::trace_headers::inject_current(&mut headers);
    headers
}

/// Why one publish of a batch was not acknowledged.
enum Failed {
    /// The subject's last message was not the one expected ([`Fence`]).
    WrongLastSequence,
    Other(PublishError),
}

impl From<jetstream::context::PublishError> for Failed {
    fn from(e: jetstream::context::PublishError) -> Self {
        match e.kind() {
            jetstream::context::PublishErrorKind::WrongLastSequence => Failed::WrongLastSequence,
            _ => Failed::Other(failure(&e)),
        }
    }
}

/// A publish JetStream refused, told apart by whether the stream's storage failed.
fn failure(e: &jetstream::context::PublishError) -> PublishError {
    if pulse_common::nats::store_failed(e) {
        PublishError::StoreFailed(e.to_string())
    } else {
        PublishError::Publish(e.to_string())
    }
}

impl From<Failed> for PublishError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::WrongLastSequence => PublishError::Publish("wrong last sequence".to_owned()),
            Failed::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Snapshot {
        total: usize,
        items: Vec<String>,
    }

    fn snapshot(n: usize) -> Snapshot {
        Snapshot {
            total: n,
            items: (0..n).map(|i| format!("device-{i:05}")).collect(),
        }
    }

    #[test]
    fn a_snapshot_that_fits_is_encoded_whole() {
        let mut s = snapshot(10);
        let (payload, left_out) = encode_fitting(&mut s, 10_000, |s| &mut s.items).unwrap();
        assert_eq!(left_out, 0);
        assert_eq!(payload, encode(&snapshot(10)).unwrap());
    }

    #[test]
    fn a_snapshot_too_big_lists_its_first_items_within_the_limit() {
        let whole = encode(&snapshot(10_000)).unwrap().len();
        let limit = whole / 3;
        let mut s = snapshot(10_000);
        let (payload, left_out) = encode_fitting(&mut s, limit, |s| &mut s.items).unwrap();
        assert!(payload.len() <= limit, "{} > {limit}", payload.len());
        assert!(left_out > 0);
        assert_eq!(s.items.len(), 10_000 - left_out);
        assert_eq!(s.items[0], "device-00000");
        assert_eq!(s.total, 10_000, "counts still cover every item");
        // Not needlessly short: within a tenth of the limit.
        assert!(
            payload.len() > limit * 9 / 10,
            "{} of {limit}",
            payload.len()
        );
    }

    #[test]
    fn a_snapshot_that_cannot_fit_keeps_an_empty_list_and_its_size_tells() {
        let mut s = snapshot(100);
        let (payload, left_out) = encode_fitting(&mut s, 5, |s| &mut s.items).unwrap();
        assert_eq!(left_out, 100);
        assert!(payload.len() > 5);
    }
}
