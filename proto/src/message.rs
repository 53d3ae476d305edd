//! Data messages: the NATS payloads, byte for byte what a browser receives.
//!
//! A gateway forwards these bytes untouched, so every field here is public contract. Fields may
//! be added; none is ever renamed or removed within `v1`. Every message carries `seq`, which
//! increases per subject: a consumer keeps the highest `seq` seen per subject and drops anything
//! older that arrives later.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{DeviceId, TenantId, Topic};
use crate::time::Timestamp;

macro_rules! type_tag {
    ($name:ident, $value:literal) => {
        #[doc = concat!("The `type` field of a message: always `\"", $value, "\"`.")]
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema,
        )]
        pub enum $name {
            #[default]
            #[serde(rename = $value)]
            Tag,
        }
    };
}

type_tag!(AlertsTag, "alerts");
type_tag!(TelemetryTag, "telemetry");
type_tag!(FleetTag, "fleet");
type_tag!(EventTag, "event");
type_tag!(UserChangedTag, "user_changed");

/// `pulse.v1.<tenant_id>.alerts`: the tenant's OPEN alerts, newest first, capped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertsSnapshot {
    /// Always `"alerts"`.
    #[serde(rename = "type")]
    pub kind: AlertsTag,
    pub tenant_id: TenantId,
    pub seq: u64,
    /// When the snapshot was read from the database.
    pub ts: Timestamp,
    /// Open alerts, newest first; at most the configured cap (default 100).
    pub alerts: Vec<Alert>,
    /// Number of open alerts in all, which may exceed `alerts.len()` when the list is capped.
    pub total_open: u64,
    /// Open alerts per severity, listed or not: each severity with open alerts, as a string
    /// key, and how many (`{"2": 10, "4": 3}`); the counts add up to `total_open`. A capped
    /// list can leave out a critical alert; this still counts it. Empty in messages of pollers
    /// that predate it.
    #[serde(default)]
    pub open_by_severity: BTreeMap<i32, u64>,
}

/// One alert as listed in an [`AlertsSnapshot`].
#[derive(Debug, Clone, PartialEq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    pub alert_id: i64,
    pub device_id: String,
    pub site_id: String,
    pub alert_type: String,
    /// Higher is more severe, from 0; the dashboard treats 4 and above as critical.
    #[schemars(range(min = 0))]
    pub severity: i32,
    /// Free text written by whoever raised the alert: render it as text, never as HTML.
    pub summary: String,
    pub status: AlertStatus,
    pub created_at: Timestamp,
}

/// Life cycle of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Closed,
}

impl AlertStatus {
    /// Every status, in the order of an alert's life.
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "OPEN",
            AlertStatus::Acknowledged => "ACKNOWLEDGED",
            AlertStatus::Closed => "CLOSED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "OPEN" => Some(AlertStatus::Open),
            "ACKNOWLEDGED" => Some(AlertStatus::Acknowledged),
            "CLOSED" => Some(AlertStatus::Closed),
            _ => None,
        }
    }
}

// The metrics are a decoded map by default; `StoredTelemetry` keeps them as stored text.
/// `pulse.v1.<tenant_id>.device.<device_id>.telemetry`: the device's latest reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Telemetry")]
pub struct Telemetry<M = Map<String, Value>> {
    /// Always `"telemetry"`.
    #[serde(rename = "type")]
    pub kind: TelemetryTag,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub seq: u64,
    pub data: TelemetryData<M>,
}

/// The reading inside a [`Telemetry`] message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "TelemetryData")]
pub struct TelemetryData<M = Map<String, Value>> {
    /// When the device took the reading.
    pub timestamp: Timestamp,
    /// Every metric of the reading, as written to the database.
    pub metrics: M,
}

/// A [`Telemetry`] message whose metrics are kept as the JSON text they were stored as (see
/// [`stored_payload`]): the same message on the wire, with what a decoded map cannot hold
/// (`1e400`, nesting deeper than 128, more digits than a double keeps) sent as written.
pub type StoredTelemetry = Telemetry<Box<serde_json::value::RawValue>>;

/// `pulse.v1.<tenant_id>.fleet`: device counts and statuses of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetSnapshot {
    /// Always `"fleet"`.
    #[serde(rename = "type")]
    pub kind: FleetTag,
    pub tenant_id: TenantId,
    pub seq: u64,
    /// When the snapshot was computed; statuses are as of this instant.
    pub ts: Timestamp,
    pub counts: FleetCounts,
    /// Devices, least healthy first (OFFLINE, STALE, ONLINE), then by id; capped
    /// (default 1000), while `counts` always covers every device.
    pub devices: Vec<FleetDevice>,
}

/// Device counts by status; `total = online + stale + offline`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct FleetCounts {
    pub total: u64,
    pub online: u64,
    pub stale: u64,
    pub offline: u64,
}

impl FleetCounts {
    pub fn add(&mut self, status: DeviceStatus) {
        self.total += 1;
        match status {
            DeviceStatus::Online => self.online += 1,
            DeviceStatus::Stale => self.stale += 1,
            DeviceStatus::Offline => self.offline += 1,
        }
    }
}

/// One device of a [`FleetSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = crate::nullable::null_is_sent)]
pub struct FleetDevice {
    pub device_id: String,
    pub site_id: String,
    pub status: DeviceStatus,
    /// Time of the newest reading; null when the device never reported.
    pub last_seen_at: Option<Timestamp>,
    /// Battery level from 0 to 100; null when unknown.
    #[schemars(range(min = 0, max = 100))]
    pub battery_pct: Option<f64>,
}

/// Health of a device by the age of its newest reading.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    Offline,
    Stale,
    Online,
}

// The payload is a decoded `Value` by default; `StoredEvent` keeps it as stored text.
/// `pulse.v1.<tenant_id>.events.<topic>`: an application event, e.g. `ticket:update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Event")]
pub struct Event<P = Value> {
    /// Always `"event"`.
    #[serde(rename = "type")]
    pub kind: EventTag,
    pub tenant_id: TenantId,
    pub topic: Topic,
    /// What happened, `<noun>:<verb>` by convention (`ticket:update`); 1 to 128 bytes.
    #[schemars(length(min = 1, max = 128))]
    pub event: String,
    /// The event's place in its topic, from 1.
    #[schemars(range(min = 1))]
    pub seq: u64,
    pub ts: Timestamp,
    /// Event-specific body; free-form JSON.
    pub payload: P,
}

impl<P> Event<P> {
    /// The same event with another payload (or the same one, kept another way).
    pub fn with_payload<Q>(self, payload: Q) -> Event<Q> {
        Event {
            kind: self.kind,
            tenant_id: self.tenant_id,
            topic: self.topic,
            event: self.event,
            seq: self.seq,
            ts: self.ts,
            payload,
        }
    }
}

/// An [`Event`] whose payload is kept as the JSON text it was stored as, not decoded: the
/// same message on the wire. The outbox holds what PostgreSQL's `jsonb` accepts, which is
/// more than a decoded [`Value`] holds (`1e400`, nesting deeper than 128): relayed or listed
/// as text, such a payload goes out as it was written instead of stopping the relay, or the
/// listing, of every event after it.
pub type StoredEvent = Event<Box<serde_json::value::RawValue>>;

/// JSON as PostgreSQL wrote it out (`jsonb::text`, a space after each `,` and `:`), for a
/// [`StoredEvent`] or a reading's metrics: compact, and otherwise exactly as stored. Not
/// decoded into a [`Value`] on the way: that would round every number beyond a double
/// (`123456789012345678901234`, twenty significant digits) that a consumer in another
/// language reads exactly. Keys stay in PostgreSQL's order (shorter first).
pub fn stored_payload(text: String) -> serde_json::Result<Box<serde_json::value::RawValue>> {
    serde_json::value::RawValue::from_string(compact(&text))
}

/// `json` without the whitespace between its tokens; strings (and their escapes) untouched.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// `pulse.v1.<tenant_id>.users`: a user was deleted, its role (or tenant) changed, all of
/// its sessions ended (a logout everywhere, a new password), or one of them did (a logout).
/// Gateways close that user's connections (those of the session, for one session): 4003 when
/// it was deleted, 4001 otherwise (a fresh ticket carries the new role, or is refused to a
/// session no longer there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserChanged {
    /// Always `"user_changed"`.
    #[serde(rename = "type")]
    pub kind: UserChangedTag,
    pub tenant_id: TenantId,
    /// The user, as the `sub` claim of its tickets names it.
    pub user_id: String,
    pub change: UserChange,
    /// With `signed_out` from a logout everywhere: how many times the user has logged out
    /// everywhere, this time included. Pulse's WebSocket tickets carry the count their session
    /// was read with (claim `signouts`), so a gateway refuses exactly the tickets from before
    /// it. Absent from the other changes, from a new password's, and from publishers of
    /// earlier releases.
    // Left out rather than `null` when there is none: an optional integer, never null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub signouts: Option<u64>,
    /// With `session_ended`: the session, as the claim `sid` of its tickets names it (16
    /// lowercase hex digits). Absent from the other changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub session: Option<String>,
}

/// What happened to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserChange {
    Deleted,
    Role,
    /// Every session of the user ended: its tickets from before must not keep it connected.
    SignedOut,
    /// One session of the user ended before its time (a logout): the tickets that name it
    /// (`session`) must not keep a connection open, nor open one.
    SessionEnded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_event_is_the_same_message_as_an_event_and_keeps_what_a_value_cannot_hold() {
        let ts = Timestamp(time::macros::datetime!(2026-12-01 10:00:00 UTC));
        let (tenant, topic) = (TenantId::parse("acme").unwrap(), Topic::parse("t").unwrap());
        let event = Event {
            kind: Default::default(),
            tenant_id: tenant.clone(),
            topic: topic.clone(),
            event: "ticket:update".into(),
            seq: 7,
            ts,
            payload: json!({"id": 5, "tags": ["a"]}),
        };
        let stored = |payload: &str| -> StoredEvent {
            let raw = serde_json::value::RawValue::from_string(payload.to_owned()).unwrap();
            event.clone().with_payload(raw)
        };
        assert_eq!(
            serde_json::to_string(&stored(r#"{"id":5,"tags":["a"]}"#)).unwrap(),
            serde_json::to_string(&event).unwrap()
        );
        let huge = format!("1{}", "0".repeat(400));
        let text = serde_json::to_string(&stored(&huge)).unwrap();
        assert!(text.ends_with(&format!(r#""payload":{huge}}}"#)), "{text}");
    }

    #[test]
    fn a_stored_payload_is_compact_and_exact() {
        let stored = |text: &str| stored_payload(text.to_owned()).unwrap().get().to_owned();
        // As PostgreSQL writes `jsonb` out: spaces after `,` and `:`, shorter keys first.
        assert_eq!(
            stored(r#"{"id": 5, "tags": ["a", "b c"], "note": "x: y, \"z\" \\"}"#),
            r#"{"id":5,"tags":["a","b c"],"note":"x: y, \"z\" \\"}"#
        );
        // Numbers a double does not hold keep every digit.
        for exact in [
            "123456789012345678901234",
            "0.12345678901234567890",
            "-1e-400",
        ] {
            assert_eq!(stored(&format!("[{exact}]")), format!("[{exact}]"));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(stored(&deep), deep);
        assert!(stored_payload("{\"a\": }".into()).is_err());
    }

    #[test]
    fn user_changed_shape() {
        let msg = UserChanged {
            kind: Default::default(),
            tenant_id: TenantId::parse("acme").unwrap(),
            user_id: "42".into(),
            change: UserChange::Deleted,
            signouts: None,
            session: None,
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({"type": "user_changed", "tenant_id": "acme", "user_id": "42", "change": "deleted"})
        );
        let counted = UserChanged {
            change: UserChange::SignedOut,
            signouts: Some(3),
            ..msg.clone()
        };
        let text = json!({"type": "user_changed", "tenant_id": "acme", "user_id": "42", "change": "signed_out", "signouts": 3});
        assert_eq!(serde_json::to_value(&counted).unwrap(), text);
        // A message of an earlier release, without the count, still reads.
        let earlier = json!({"type": "user_changed", "tenant_id": "acme", "user_id": "42", "change": "signed_out"});
        let read: UserChanged = serde_json::from_value(earlier).unwrap();
        assert_eq!(read.signouts, None);
        let ended = UserChanged {
            change: UserChange::SessionEnded,
            session: Some("00ff00ff00ff00ff".into()),
            ..msg
        };
        let text = json!({"type": "user_changed", "tenant_id": "acme", "user_id": "42", "change": "session_ended", "session": "00ff00ff00ff00ff"});
        assert_eq!(serde_json::to_value(&ended).unwrap(), text);
    }

    fn ts() -> Timestamp {
        Timestamp(time::macros::datetime!(2026-11-22 10:00:00 UTC))
    }

    #[test]
    fn alerts_snapshot_shape() {
        let msg = AlertsSnapshot {
            kind: Default::default(),
            tenant_id: TenantId::parse("acme").unwrap(),
            seq: 7,
            ts: ts(),
            alerts: vec![Alert {
                alert_id: 42,
                device_id: "dev-1".into(),
                site_id: "site-a".into(),
                alert_type: "battery_low".into(),
                severity: 4,
                summary: "<img src=x onerror=alert(1)>".into(),
                status: AlertStatus::Open,
                created_at: ts(),
            }],
            total_open: 1,
            open_by_severity: BTreeMap::from([(4, 1)]),
        };
        let value = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            value,
            json!({
                "type": "alerts", "tenant_id": "acme", "seq": 7, "ts": "2026-11-22T10:00:00Z",
                "alerts": [{
                    "alert_id": 42, "device_id": "dev-1", "site_id": "site-a",
                    "alert_type": "battery_low", "severity": 4,
                    "summary": "<img src=x onerror=alert(1)>", "status": "OPEN",
                    "created_at": "2026-11-22T10:00:00Z"
                }],
                "total_open": 1,
                "open_by_severity": {"4": 1}
            })
        );
        let back: AlertsSnapshot = serde_json::from_value(value).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn an_alerts_snapshot_without_severity_counts_still_reads() {
        // As a poller that predates `open_by_severity` publishes it.
        let back: AlertsSnapshot = serde_json::from_value(json!({
            "type": "alerts", "tenant_id": "acme", "seq": 7, "ts": "2026-11-22T10:00:00Z",
            "alerts": [], "total_open": 0
        }))
        .unwrap();
        assert!(back.open_by_severity.is_empty());
    }

    #[test]
    fn telemetry_shape() {
        let mut metrics = Map::new();
        metrics.insert("temp_c".into(), json!(21.5));
        let msg = Telemetry {
            kind: Default::default(),
            tenant_id: TenantId::parse("acme").unwrap(),
            device_id: DeviceId::parse("dev-0001").unwrap(),
            seq: 3,
            data: TelemetryData {
                timestamp: ts(),
                metrics,
            },
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({
                "type": "telemetry", "tenant_id": "acme", "device_id": "dev-0001", "seq": 3,
                "data": {"timestamp": "2026-11-22T10:00:00Z", "metrics": {"temp_c": 21.5}}
            })
        );
    }

    #[test]
    fn fleet_shape() {
        let mut counts = FleetCounts::default();
        counts.add(DeviceStatus::Online);
        counts.add(DeviceStatus::Stale);
        counts.add(DeviceStatus::Offline);
        let msg = FleetSnapshot {
            kind: Default::default(),
            tenant_id: TenantId::parse("acme").unwrap(),
            seq: 9,
            ts: ts(),
            counts,
            devices: vec![FleetDevice {
                device_id: "dev-1".into(),
                site_id: "s1".into(),
                status: DeviceStatus::Stale,
                last_seen_at: None,
                battery_pct: Some(55.5),
            }],
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({
                "type": "fleet", "tenant_id": "acme", "seq": 9, "ts": "2026-11-22T10:00:00Z",
                "counts": {"total": 3, "online": 1, "stale": 1, "offline": 1},
                "devices": [{"device_id": "dev-1", "site_id": "s1", "status": "STALE",
                             "last_seen_at": null, "battery_pct": 55.5}]
            })
        );
    }

    #[test]
    fn event_shape() {
        let msg = Event {
            kind: Default::default(),
            tenant_id: TenantId::parse("acme").unwrap(),
            topic: Topic::parse("tickets").unwrap(),
            event: "ticket:update".into(),
            seq: 1,
            ts: ts(),
            payload: json!({"id": 5, "status": "closed"}),
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({
                "type": "event", "tenant_id": "acme", "topic": "tickets",
                "event": "ticket:update", "seq": 1, "ts": "2026-11-22T10:00:00Z",
                "payload": {"id": 5, "status": "closed"}
            })
        );
    }

    #[test]
    fn the_type_tag_is_checked() {
        let wrong = json!({"type": "fleet", "tenant_id": "acme", "seq": 1,
            "ts": "2026-11-22T10:00:00Z", "alerts": [], "total_open": 0});
        assert!(serde_json::from_value::<AlertsSnapshot>(wrong).is_err());
        let hostile = json!({"type": "alerts", "tenant_id": "acme.>", "seq": 1,
            "ts": "2026-11-22T10:00:00Z", "alerts": [], "total_open": 0});
        assert!(serde_json::from_value::<AlertsSnapshot>(hostile).is_err());
    }
}
