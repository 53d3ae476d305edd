//! What a connection needs from the gateway it runs in, and nothing more: a few settings, the
//! shared services it calls, and the drain signal.
//!
//! The HTTP side builds one [`ConnectionContext`] at start and hands every admitted connection
//! a reference to it. The connection module depends on this narrow view instead of the server's
//! state, so the server can depend on the connection without the connection depending back on
//! the server; and an open connection holds one pointer here, not a copy of every handle.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::GatewayConfig;
use crate::devices::Devices;
use crate::fanout::FanOut;
use crate::metrics::Metrics;
use crate::ratelimit::MessageQuota;
use crate::revoke::Revocations;

/// The configuration values a connection reads, taken from [`GatewayConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Events that may wait in a client's queue (`PULSE_CLIENT_QUEUE_EVENTS`).
    pub queue_events: usize,
    /// Client requests per second, and the burst beyond it, before requests are refused.
    pub msgs_per_second: u32,
    pub msgs_burst: u32,
    /// Most channels one connection may subscribe.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    /// A client heard from less recently than this is closed.
    pub idle_timeout: Duration,
    /// Longest a write to the client may take.
    pub write_timeout: Duration,
    /// The span over which draining closes the connections.
    pub drain: Duration,
}

impl From<&GatewayConfig> for Settings {
    fn from(config: &GatewayConfig) -> Self {
        Self {
            queue_events: config.client_queue_events,
            msgs_per_second: config.client_msgs_per_second,
            msgs_burst: config.client_msgs_burst,
            max_subscriptions: config.max_subscriptions,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            drain: config.drain,
        }
    }
}

/// Everything a connection uses beyond its socket, shared by every connection of an instance.
pub struct ConnectionContext {
    pub settings: Settings,
    /// Each connection's client-message limit is taken from here.
    pub message_quota: MessageQuota,
    /// Verifies the fresh token of a re-authentication.
    pub auth: Authenticator,
    pub fanout: FanOut,
    /// Which devices each tenant has, checked before a device is first subscribed here.
    pub devices: Devices,
    pub metrics: Metrics,
    /// Connections by user, closed when the user is deleted or its role changes.
    pub revocations: Arc<Revocations>,
    /// True once the instance drains: connections are closed with 1012.
    pub drain: watch::Receiver<bool>,
}
