//! Publishing to NATS through JetStream: each message is serialized once, carries its `seq` and
//! trace context in headers, and counts as published only once JetStream acknowledged it.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use pulse_proto::Subject;

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
    #[error("no acknowledgement within {ACK_TIMEOUT:?}")]
    AckTimeout,
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

/// Publishes a batch, pipelined, and returns the keys of the acknowledged messages together
/// with the first error, if any. A message that failed is simply not in the returned list: the
/// caller keeps it marked unpublished and retries on its next cycle. A message too big for the
/// server fails alone (the others of the batch still go out); any other refusal ends the batch.
pub async fn publish_all<K>(
    js: &jetstream::Context,
    batch: Vec<Outgoing<K>>,
) -> (Vec<K>, Option<PublishError>) {
    let mut done = Vec::with_capacity(batch.len());
    let mut first_error = None;
    let mut pending = FuturesUnordered::new();
    for out in batch {
        let mut headers = HeaderMap::new();
        headers.insert(pulse_proto::headers::SEQ, out.seq.to_string().as_str());
        if let Some(id) = &out.msg_id {
            headers.insert(pulse_proto::headers::MSG_ID, id.as_str());
        }
        pulse_common::trace_headers::inject_current(&mut headers);
        match js
            .publish_with_headers(out.subject.to_string(), headers, out.payload)
            .await
        {
            Ok(ack) => {
                let key = out.key;
                pending.push(async move {
                    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
                        Ok(Ok(_)) => Ok(key),
                        Ok(Err(e)) => Err(PublishError::Publish(e.to_string())),
                        Err(_) => Err(PublishError::AckTimeout),
                    }
                });
            }
            Err(e) => {
                let too_big = e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded;
                first_error.get_or_insert(PublishError::Publish(e.to_string()));
                if !too_big {
                    break;
                }
            }
        }
        while pending.len() >= MAX_IN_FLIGHT {
            if let Some(r) = pending.next().await {
                collect(r, &mut done, &mut first_error);
            }
        }
    }
    while let Some(r) = pending.next().await {
        collect(r, &mut done, &mut first_error);
    }
    (done, first_error)
}

fn collect<K>(r: Result<K, PublishError>, done: &mut Vec<K>, err: &mut Option<PublishError>) {
    match r {
        Ok(k) => done.push(k),
        Err(e) => {
            err.get_or_insert(e);
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
