//! A message ready for clients: the NATS payload as WebSocket text, made once and shared.

use std::time::Instant;

use axum::extract::ws::Utf8Bytes;

use crate::ids::TopicId;

/// One message for any number of clients. Cloning shares the payload bytes.
#[derive(Clone, Debug)]
pub struct Frame {
    pub topic: TopicId,
    /// The message's `seq`; 0 when the publisher set none (then it is never dropped as old).
    pub seq: u64,
    /// A snapshot: a client never gets one older than (or equal to) what it already has. Events
    /// are never dropped by `seq`: concurrent publishers may deliver them slightly out of order.
    pub snapshot: bool,
    pub text: Utf8Bytes,
    /// When the gateway received it from NATS, for the fan-out latency histogram.
    pub received: Instant,
}

/// Frames are equal when they carry the same message of the same subject.
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic && self.seq == other.seq && self.text == other.text
    }
}

/// Reads `seq` from the `Pulse-Seq` header.
pub fn seq_of(headers: Option<&async_nats::HeaderMap>) -> u64 {
    headers
        .and_then(|h| h.get(pulse_proto::headers::SEQ))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}
