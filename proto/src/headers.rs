//! NATS message headers Pulse publishers set. Consumers may ignore them: the payload is complete.

/// The message's `seq`, as decimal text, so a forwarder can order messages without parsing JSON.
pub const SEQ: &str = "Pulse-Seq";
/// W3C trace context of the publishing span.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state accompanying `traceparent`.
pub const TRACESTATE: &str = "tracestate";
