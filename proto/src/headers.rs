//! NATS message headers Pulse publishers set. Consumers may ignore them: the payload is complete.

/// The message's `seq`, as decimal text, so a forwarder can order messages without parsing JSON.
pub const SEQ: &str = "Pulse-Seq";
/// W3C trace context of the publishing span.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state accompanying `traceparent`.
pub const TRACESTATE: &str = "tracestate";
/// JetStream's de-duplication id. Events carry [`event_msg_id`], so an event relayed twice
/// (after a crash or failover) is stored once.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The `Nats-Msg-Id` of an event: `<tenant_id>.<topic>.<seq>`, unique per event.
pub fn event_msg_id(tenant: &crate::TenantId, topic: &crate::Topic, seq: u64) -> String {
    format!("{tenant}.{topic}.{seq}")
}
