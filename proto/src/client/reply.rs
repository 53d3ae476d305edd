//! What the gateway answers on its own: `subscribed`, `unsubscribed`, `error`, `events_reset`,
//! `pong`, `authenticated` (data messages are forwarded from NATS unchanged).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Channel, ErrorCode, ProtocolError};
use crate::id::Topic;

/// Replies the gateway sends on its own (data messages are forwarded from NATS unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerReply {
    /// `{"type":"subscribed","channel":"device","device_id":"dev-1"}`
    Subscribed {
        #[serde(flatten)]
        channel: Channel,
        /// Events channel subscribed without `since`: the newest `seq` this gateway knows for
        /// the topic (delivered, or read from the stream when it subscribed). Every event above
        /// it follows; events at or below it may still arrive just after and are duplicates.
        /// Absent when the gateway does not know it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "u64")]
        seq: Option<u64>,
    },
    /// `{"type":"unsubscribed","channel":"alerts"}`
    Unsubscribed(Channel),
    /// `{"type":"error","code":"invalid_id","message":"..."}`, naming the channel when the
    /// refused request was about one.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
    },
    /// `{"type":"events_reset","topic":"tickets","oldest":57,"reason":"expired"}`: events of
    /// the topic were missed and cannot be delivered. Refetch what they drive, then go on with
    /// the events that follow (from `oldest`, when known).
    #[schemars(transform = crate::nullable::null_is_sent)]
    EventsReset {
        topic: Topic,
        /// `seq` of the first event that follows; `null` when unknown.
        oldest: Option<u64>,
        reason: ResetReason,
    },
    /// `{"type":"pong"}`
    Pong,
    /// `{"type":"authenticated","exp":1795000000}`: the new token's expiry, unix seconds.
    Authenticated { exp: u64 },
}

/// Why an `events_reset` was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// Events after `since` (or, for a live subscriber, events missed on the way to the
    /// gateway) are no longer retained.
    Expired,
    /// More events were missed than a gateway replays: more than `PULSE_REPLAY_MAX_EVENTS`,
    /// more bytes than `PULSE_REPLAY_MAX_BYTES`, or more than the connection may have waiting
    /// across its channels.
    Limit,
    /// The event history cannot be read right now (JetStream unavailable).
    Unavailable,
    /// Events went missing on the way to the gateway and could not be read back.
    Gap,
}

impl ServerReply {
    /// `subscribed` for `channel`, without a `seq`.
    pub fn subscribed(channel: Channel) -> Self {
        ServerReply::Subscribed { channel, seq: None }
    }
}

impl From<ProtocolError> for ServerReply {
    fn from(e: ProtocolError) -> Self {
        ServerReply::Error {
            code: e.code,
            message: e.message,
            channel: e.channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::id::DeviceId;

    fn tickets() -> Channel {
        Channel::Events {
            topic: Topic::parse("tickets").unwrap(),
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let cases = [
            (
                ServerReply::subscribed(Channel::Alerts),
                json!({"type": "subscribed", "channel": "alerts"}),
            ),
            (
                ServerReply::subscribed(Channel::Device {
                    device_id: DeviceId::parse("dev-1").unwrap(),
                }),
                json!({"type": "subscribed", "channel": "device", "device_id": "dev-1"}),
            ),
            (
                ServerReply::Subscribed {
                    channel: tickets(),
                    seq: Some(41),
                },
                json!({"type": "subscribed", "channel": "events", "topic": "tickets", "seq": 41}),
            ),
            (
                ServerReply::EventsReset {
                    topic: Topic::parse("tickets").unwrap(),
                    oldest: Some(57),
                    reason: ResetReason::Expired,
                },
                json!({"type": "events_reset", "topic": "tickets", "oldest": 57, "reason": "expired"}),
            ),
            (
                ServerReply::EventsReset {
                    topic: Topic::parse("tickets").unwrap(),
                    oldest: None,
                    reason: ResetReason::Unavailable,
                },
                json!({"type": "events_reset", "topic": "tickets", "oldest": null, "reason": "unavailable"}),
            ),
            (
                ServerReply::Error {
                    code: ErrorCode::Unavailable,
                    message: "m".into(),
                    channel: Some(tickets()),
                },
                json!({"type": "error", "code": "unavailable", "message": "m", "channel": "events", "topic": "tickets"}),
            ),
            (
                ServerReply::Unsubscribed(Channel::Events {
                    topic: Topic::parse("tickets").unwrap(),
                }),
                json!({"type": "unsubscribed", "channel": "events", "topic": "tickets"}),
            ),
            (
                ServerReply::Error {
                    code: ErrorCode::NotSubscribed,
                    message: "m".into(),
                    channel: None,
                },
                json!({"type": "error", "code": "not_subscribed", "message": "m"}),
            ),
            (ServerReply::Pong, json!({"type": "pong"})),
            (
                ServerReply::Authenticated { exp: 5 },
                json!({"type": "authenticated", "exp": 5}),
            ),
        ];
        for (reply, want) in cases {
            let value = serde_json::to_value(&reply).unwrap();
            assert_eq!(value, want);
            assert_eq!(serde_json::from_value::<ServerReply>(value).unwrap(), reply);
        }
    }
}
