//! The client ↔ gateway protocol spoken over the WebSocket.
//!
//! Clients send JSON text frames with an `action`; the gateway answers with a `type`. Parsing is
//! strict and total: every input maps either to a [`ClientRequest`] or to a [`ProtocolError`]
//! whose [`ErrorCode`] tells the client exactly what was wrong. Nothing here can panic on input.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{DeviceId, IdError, TenantId, Topic};
use crate::subject::Subject;

mod reply;

pub use reply::{ResetReason, ServerReply};

/// What a client may subscribe to. The tenant is never part of it: it comes from the token.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Channel {
    Alerts,
    Fleet,
    Device { device_id: DeviceId },
    Events { topic: Topic },
}

impl Channel {
    /// The NATS subject carrying this channel for `tenant`.
    pub fn subject(&self, tenant: &TenantId) -> Subject {
        let tenant = tenant.clone();
        match self {
            Channel::Alerts => Subject::Alerts(tenant),
            Channel::Fleet => Subject::Fleet(tenant),
            Channel::Device { device_id } => Subject::Telemetry(tenant, device_id.clone()),
            Channel::Events { topic } => Subject::Events(tenant, topic.clone()),
        }
    }
}

/// A parsed client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// `since`, for an events channel only: replay every retained event with a higher `seq`
    /// before the live ones.
    Subscribe {
        channel: Channel,
        since: Option<u64>,
    },
    Unsubscribe(Channel),
    Ping,
    /// A fresh token for the same tenant, sent before the current one expires.
    Auth {
        token: String,
    },
}

/// Machine-readable error codes of `{"type":"error"}` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON, not a JSON object, or nests arrays and objects 128 or more deep.
    InvalidJson,
    /// `action` is missing or not one of subscribe, unsubscribe, ping, auth.
    UnknownAction,
    /// `type` is missing or not one of alerts, fleet, device, events.
    UnknownType,
    /// A field the action needs is missing or not a string (`device_id`, `topic`, `token`).
    MissingField,
    /// `device_id` or `topic` breaks the id rule `^[A-Za-z0-9_-]{1,64}$`.
    InvalidId,
    /// Unsubscribe of a channel the connection is not subscribed to.
    NotSubscribed,
    /// The connection sends faster than its limit; it is closed with 4029 if it goes on.
    RateLimited,
    /// The connection holds the most subscriptions allowed.
    TooManySubscriptions,
    /// An `auth` token that is invalid, expired, for another tenant, for a user who holds the
    /// most connections allowed, or issued before its user was deleted or its role changed;
    /// the current token stays in force.
    InvalidToken,
    /// Binary frames are not part of the protocol.
    UnsupportedFrame,
    /// The gateway could not serve the request right now (e.g. NATS is unavailable); retry.
    Unavailable,
    /// `since` is not a whole number from 0 to 2^53 - 1.
    InvalidSince,
    /// The tenant has as many distinct subjects in use on this gateway as it may
    /// (`PULSE_MAX_SUBJECTS_PER_TENANT`), or the token's user brought as many into use as one
    /// user may (`PULSE_MAX_SUBJECTS_PER_USER`); the connection stays open.
    TooManySubjects,
    /// `device_id` names no device of the token's tenant (none is subscribed on NATS).
    UnknownDevice,
}

/// A refused client message; becomes a `{"type":"error"}` reply and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// The channel the request was about, when it could be read (the reply names it).
    pub channel: Option<Channel>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            channel: None,
        }
    }

    /// The same error, naming the channel the request was about.
    pub fn about(self, channel: Channel) -> Self {
        Self {
            channel: Some(channel),
            ..self
        }
    }
}

/// Longest text echoed back in an error message, so a huge input is not reflected whole.
const ECHO_LIMIT: usize = 64;

/// `raw` as an error message may quote it: at most 64 characters, then `…`.
pub fn echo(raw: &str) -> String {
    if raw.chars().count() <= ECHO_LIMIT {
        raw.to_owned()
    } else {
        let cut: String = raw.chars().take(ECHO_LIMIT).collect();
        format!("{cut}…")
    }
}

fn id_error(field: &str, raw: &str, err: IdError) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidId,
        format!("invalid {field} {:?}: {err}", echo(raw)),
    )
}

/// Largest integer a JavaScript number holds exactly, 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn invalid_since(raw: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidSince,
        format!(
            "invalid since {}: expected a whole number from 0 to {MAX_SAFE_INTEGER}",
            echo(raw)
        ),
    )
}

fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Result<&'a str, ProtocolError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ProtocolError::new(
            ErrorCode::MissingField,
            format!("`{field}` must be a string"),
        )),
        None => Err(ProtocolError::new(
            ErrorCode::MissingField,
            format!("`{field}` is required"),
        )),
    }
}

impl ClientRequest {
    /// Parses one text frame. A bare `ping` (not JSON) is accepted for old clients.
    pub fn parse(text: &str) -> Result<ClientRequest, ProtocolError> {
        if text.trim() == "ping" {
            return Ok(ClientRequest::Ping);
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ProtocolError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
        })?;
        let Value::Object(obj) = value else {
            return Err(ProtocolError::new(
                ErrorCode::InvalidJson,
                "a message must be a JSON object",
            ));
        };
        let action = match obj.get("action") {
            Some(Value::String(a)) => a.as_str(),
            Some(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::UnknownAction,
                    "`action` must be a string",
                ));
            }
            None => {
                return Err(ProtocolError::new(
                    ErrorCode::UnknownAction,
                    "`action` is required",
                ));
            }
        };
        match action {
            "subscribe" => {
                let channel = Self::channel(&obj)?;
                let since = match channel {
                    // The topic is valid, so the error can name the channel it was about.
                    Channel::Events { .. } => {
                        Self::since(&obj).map_err(|e| e.about(channel.clone()))?
                    }
                    // Snapshots always start from the current value: `since` means nothing.
                    _ => None,
                };
                Ok(ClientRequest::Subscribe { channel, since })
            }
            "unsubscribe" => Ok(ClientRequest::Unsubscribe(Self::channel(&obj)?)),
            "ping" => Ok(ClientRequest::Ping),
            "auth" => Ok(ClientRequest::Auth {
                token: string_field(&obj, "token")?.to_owned(),
            }),
            other => Err(ProtocolError::new(
                ErrorCode::UnknownAction,
                format!(
                    "unknown action {:?}; expected subscribe, unsubscribe, ping or auth",
                    echo(other)
                ),
            )),
        }
    }

    /// `since`: absent or null, or a whole number a JavaScript number holds exactly.
    fn since(obj: &serde_json::Map<String, Value>) -> Result<Option<u64>, ProtocolError> {
        match obj.get("since") {
            None | Some(Value::Null) => Ok(None),
            // `41.0` and `4.1e1` are whole numbers too, as JSON Schema and JavaScript see them.
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(since), _) if since <= MAX_SAFE_INTEGER => Ok(Some(since)),
                (None, Some(f))
                    if f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER as f64).contains(&f) =>
                {
                    Ok(Some(f as u64))
                }
                _ => Err(invalid_since(&n.to_string())),
            },
            Some(other) => Err(invalid_since(&other.to_string())),
        }
    }

    fn channel(obj: &serde_json::Map<String, Value>) -> Result<Channel, ProtocolError> {
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            _ => {
                return Err(ProtocolError::new(
                    ErrorCode::UnknownType,
                    "`type` is required: alerts, fleet, device or events",
                ));
            }
        };
        match kind {
            "alerts" => Ok(Channel::Alerts),
            "fleet" => Ok(Channel::Fleet),
            "device" => {
                let raw = string_field(obj, "device_id")?;
                let device_id = DeviceId::parse(raw).map_err(|e| id_error("device_id", raw, e))?;
                Ok(Channel::Device { device_id })
            }
            "events" => {
                let raw = string_field(obj, "topic")?;
                let topic = Topic::parse(raw).map_err(|e| id_error("topic", raw, e))?;
                Ok(Channel::Events { topic })
            }
            other => Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown type {:?}; expected alerts, fleet, device or events",
                    echo(other)
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    fn sub(channel: Channel, since: Option<u64>) -> ClientRequest {
        ClientRequest::Subscribe { channel, since }
    }

    /// A ping request whose `pad` field nests arrays so that the frame is `depth` deep.
    fn nested(depth: usize) -> String {
        let arrays = depth - 1; // the object itself is one level
        format!(
            r#"{{"action":"ping","pad":{}{}}}"#,
            "[".repeat(arrays),
            "]".repeat(arrays)
        )
    }

    #[test]
    fn frames_up_to_127_deep_are_read_and_deeper_ones_are_invalid_json() {
        assert_eq!(ClientRequest::parse(&nested(127)), Ok(ClientRequest::Ping));
        let e = ClientRequest::parse(&nested(128)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson, "{e}");
        let e = ClientRequest::parse(&nested(100_000)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson, "{e}");
    }

    #[test]
    fn since_is_read_as_javascript_reads_a_number() {
        let with = |since: &str| {
            ClientRequest::parse(&format!(
                r#"{{"action":"subscribe","type":"events","topic":"tickets","since":{since}}}"#
            ))
        };
        assert_eq!(with("41.0"), Ok(sub(tickets(), Some(41))));
        assert_eq!(with("4.1e1"), Ok(sub(tickets(), Some(41))));
        // A double holds no fraction at 2^52: `JSON.parse` gives 4503599627370496, and so
        // does the gateway, rather than refusing what a browser sees as a whole number.
        let big = with("4503599627370496.5");
        assert_eq!(big, Ok(sub(tickets(), Some(4_503_599_627_370_496))));
        for bad in ["41.5", "9007199254740992", "-1", "\"41\"", "true"] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidSince, "{bad}: {e}");
        }
    }

    fn tickets() -> Channel {
        Channel::Events {
            topic: Topic::parse("tickets").unwrap(),
        }
    }

    fn code_of(text: &str) -> ErrorCode {
        ClientRequest::parse(text).unwrap_err().code
    }

    #[test]
    fn parses_every_action() {
        let cases = [
            (
                r#"{"action":"subscribe","type":"alerts"}"#,
                sub(Channel::Alerts, None),
            ),
            (
                r#"{"action":"subscribe","type":"fleet"}"#,
                sub(Channel::Fleet, None),
            ),
            (
                r#"{"action":"subscribe","type":"device","device_id":"dev-0001"}"#,
                sub(
                    Channel::Device {
                        device_id: dev("dev-0001"),
                    },
                    None,
                ),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":41}"#,
                sub(tickets(), Some(41)),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":0}"#,
                sub(tickets(), Some(0)),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":41.0}"#,
                sub(tickets(), Some(41)),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":4.1e1}"#,
                sub(tickets(), Some(41)),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":-0.0}"#,
                sub(tickets(), Some(0)),
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"tickets","since":null}"#,
                sub(tickets(), None),
            ),
            (
                r#"{"action":"subscribe","type":"fleet","since":"ignored"}"#,
                sub(Channel::Fleet, None),
            ),
            (
                r#"{"action":"unsubscribe","type":"events","topic":"tickets"}"#,
                ClientRequest::Unsubscribe(Channel::Events {
                    topic: Topic::parse("tickets").unwrap(),
                }),
            ),
            (r#"{"action":"ping"}"#, ClientRequest::Ping),
            ("ping", ClientRequest::Ping),
            (
                r#"{"action":"auth","token":"abc"}"#,
                ClientRequest::Auth {
                    token: "abc".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ClientRequest::parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let req = ClientRequest::parse(r#"{"action":"subscribe","type":"alerts","since":5}"#);
        assert_eq!(req.unwrap(), sub(Channel::Alerts, None));
    }

    #[test]
    fn every_bad_input_has_a_precise_code() {
        use ErrorCode::*;
        let cases = [
            ("", InvalidJson),
            ("{", InvalidJson),
            ("[1,2]", InvalidJson),
            ("\"subscribe\"", InvalidJson),
            ("null", InvalidJson),
            ("{}", UnknownAction),
            (r#"{"action":5}"#, UnknownAction),
            (r#"{"action":"delete"}"#, UnknownAction),
            (r#"{"action":"subscribe"}"#, UnknownType),
            (r#"{"action":"subscribe","type":"everything"}"#, UnknownType),
            (r#"{"action":"subscribe","type":"device"}"#, MissingField),
            (
                r#"{"action":"subscribe","type":"device","device_id":7}"#,
                MissingField,
            ),
            (r#"{"action":"subscribe","type":"events"}"#, MissingField),
            (r#"{"action":"auth"}"#, MissingField),
            (
                r#"{"action":"subscribe","type":"device","device_id":">"}"#,
                InvalidId,
            ),
            (
                r#"{"action":"subscribe","type":"device","device_id":"*"}"#,
                InvalidId,
            ),
            (
                r#"{"action":"subscribe","type":"device","device_id":"a.b"}"#,
                InvalidId,
            ),
            (
                r#"{"action":"subscribe","type":"device","device_id":""}"#,
                InvalidId,
            ),
            (
                r#"{"action":"unsubscribe","type":"events","topic":"t.>"}"#,
                InvalidId,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":-1}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":1.5}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":"5"}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":9007199254740992}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":[1]}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":9.007199254740992e15}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":1e300}"#,
                InvalidSince,
            ),
            (
                r#"{"action":"subscribe","type":"events","topic":"t","since":-1.0}"#,
                InvalidSince,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(code_of(text), want, "{text}");
        }
        let huge = format!(
            r#"{{"action":"subscribe","type":"device","device_id":"{}"}}"#,
            "x".repeat(65)
        );
        assert_eq!(code_of(&huge), InvalidId);
    }

    #[test]
    fn an_invalid_since_names_the_events_channel_and_a_parse_error_names_none() {
        let text = r#"{"action":"subscribe","type":"events","topic":"tickets","since":-1}"#;
        let reply = ServerReply::from(ClientRequest::parse(text).unwrap_err());
        let wire = serde_json::to_value(&reply).unwrap();
        assert_eq!(wire["code"], "invalid_since");
        assert_eq!(wire["channel"], "events");
        assert_eq!(wire["topic"], "tickets");
        let text = r#"{"action":"subscribe","type":"events","topic":"a.b","since":-1}"#;
        let wire = serde_json::to_value(ServerReply::from(ClientRequest::parse(text).unwrap_err()));
        let wire = wire.unwrap();
        assert_eq!(wire["code"], "invalid_id");
        assert!(wire.get("channel").is_none(), "{wire}");
    }

    #[test]
    fn errors_do_not_echo_huge_input() {
        let huge = format!(r#"{{"action":"{}"}}"#, "a".repeat(100_000));
        let err = ClientRequest::parse(&huge).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownAction);
        assert!(err.message.len() < 200, "{}", err.message.len());
    }

    #[test]
    fn channel_subject_uses_the_token_tenant() {
        let tenant = TenantId::parse("acme").unwrap();
        let ch = Channel::Device {
            device_id: dev("d1"),
        };
        assert_eq!(
            ch.subject(&tenant).to_string(),
            "pulse.v1.acme.device.d1.telemetry"
        );
    }
}
