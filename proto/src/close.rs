//! WebSocket close codes the gateway uses. Clients act on the code, not the reason text.

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// A frame that breaks the WebSocket protocol (reserved bits set, an unmasked frame, a
/// continuation without a start, ...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame whose payload is not valid UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// A binary frame was sent; the protocol is text only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A frame larger than the gateway's `PULSE_MAX_MESSAGE_BYTES`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The gateway is restarting or draining: reconnect (to any instance) after a short jitter.
pub const SERVICE_RESTART: u16 = 1012;
/// Missing, malformed, badly signed, expired, not yet valid or `exp`-less token, one of a
/// `kind` other than `ws`, one signed with an algorithm or `kid` the gateway does not accept,
/// or one with another `iss` or `aud` than the gateway requires; a first frame that is not a
/// valid `auth` on a connection authenticating by its first message; also a token that
/// expired while connected, a user whose role changed or whose sessions all ended, or a ticket
/// whose session ended. Get a fresh token before reconnecting.
pub const UNAUTHORIZED: u16 = 4001;
/// A valid token without `tenant_id` or `role` (or with one that is not a string), with an
/// invalid `tenant_id`, with a role that may not connect, or with a `sub` that is neither a
/// string nor an integer; also a user deleted while connected. Do not retry with the same token.
pub const FORBIDDEN: u16 = 4003;
/// The client read too slowly and fell too far behind on an event channel: reconnect and recover.
pub const SLOW_CONSUMER: u16 = 4008;
/// Too many messages from the client, or a connection cap was reached.
pub const RATE_LIMITED: u16 = 4029;
/// The server is going away for this client: it sent nothing, not even a pong, for
/// `PULSE_IDLE_TIMEOUT_SECONDS`.
pub const GOING_AWAY: u16 = 1001;
/// Not sent on the wire: recorded in metrics when a connection ended without a close frame.
pub const ABNORMAL: u16 = 1006;
