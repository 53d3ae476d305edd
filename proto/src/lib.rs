#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`id`]: the id rule and the `TenantId` / `DeviceId` / `Topic` newtypes.
//! - [`subject`]: subject builders, parsing, and the JetStream streams.
//! - [`message`]: the data messages published on NATS and forwarded to browsers.
//! - [`client`]: the WebSocket protocol between clients and gateways.
//! - [`close`]: WebSocket close codes.
//! - [`fleet`]: the device status rule and fleet summary.
//! - [`headers`]: NATS header names.
//! - [`schema`]: JSON Schemas of every message, as shipped in `proto/schemas/`.

pub mod client;
pub mod close;
pub mod fleet;
pub mod headers;
pub mod id;
pub mod message;
mod nullable;
pub mod schema;
pub mod subject;
pub mod time;

pub use client::{Channel, ClientRequest, ErrorCode, ProtocolError, ResetReason, ServerReply};
pub use id::{DeviceId, IdError, SiteId, TenantId, Topic, validate_id};
pub use message::{
    Alert, AlertStatus, AlertsSnapshot, AlertsTag, DeviceStatus, Event, EventTag, FleetCounts,
    FleetDevice, FleetSnapshot, FleetTag, StoredEvent, StoredTelemetry, Telemetry, TelemetryData,
    TelemetryTag, UserChange, UserChanged, UserChangedTag,
};
pub use subject::Subject;
pub use time::Timestamp;
