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

/// Publishes a batch, pipelined, and returns the keys of the acknowledged messages together
/// with the first error, if any. A message that failed is simply not in the returned list: the
/// caller keeps it marked unpublished and retries on its next cycle.
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
                first_error.get_or_insert(PublishError::Publish(e.to_string()));
                break;
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
