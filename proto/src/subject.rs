//! NATS subjects and JetStream streams of the contract, version `v1`.
//!
//! | subject | message |
//! | --- | --- |
//! | `pulse.v1.<tenant_id>.alerts` | [`AlertsSnapshot`](crate::AlertsSnapshot) |
//! | `pulse.v1.<tenant_id>.fleet` | [`FleetSnapshot`](crate::FleetSnapshot) |
//! | `pulse.v1.<tenant_id>.device.<device_id>.telemetry` | [`Telemetry`](crate::Telemetry) |
//! | `pulse.v1.<tenant_id>.events.<topic>` | [`Event`](crate::Event) |
//!
//! Subjects are only ever built from validated ids, so none of them contains a wildcard.

use std::fmt;

use crate::id::{DeviceId, TenantId, Topic};

/// First two tokens of every Pulse subject.
pub const PREFIX: &str = "pulse.v1";

/// JetStream stream that keeps the newest message of every snapshot subject
/// (alerts, fleet, telemetry): one message per subject, direct get allowed.
pub const STATE_STREAM: &str = "PULSE_STATE";
/// Subjects captured by [`STATE_STREAM`].
pub const STATE_STREAM_SUBJECTS: [&str; 3] = [
    "pulse.v1.*.alerts",
    "pulse.v1.*.fleet",
    "pulse.v1.*.device.*.telemetry",
];
/// JetStream stream that keeps a bounded history of event subjects, for recovery.
pub const EVENTS_STREAM: &str = "PULSE_EVENTS";
/// [`EVENTS_STREAM`]'s description. It names the numbering: events stored before `seq`
/// counted per topic carried far higher `seq`s from one shared sequence, and the poller
/// empties a stream without this description once.
pub const EVENTS_STREAM_DESCRIPTION: &str =
    "Pulse: recent events per tenant and topic (seq counts per topic)";
/// Subjects captured by [`EVENTS_STREAM`].
pub const EVENTS_STREAM_SUBJECTS: [&str; 1] = ["pulse.v1.*.events.*"];
/// Most events of one topic the relay sends in one pass. A pass only partly acknowledged is
/// sent again from its first unacknowledged event, so an event is stored in [`EVENTS_STREAM`]
/// after fewer than this many later events of its topic: a reader of the stream finds a
/// topic's events in `seq` order but for that much.
pub const EVENTS_RELAYED_PER_TOPIC_PASS: u64 = 200;

/// JetStream key-value bucket of the devices each tenant has: one key
/// [`device_key`] per device, kept by the active poller from PostgreSQL. Gateways read it
/// before subscribing a client to a device's telemetry (error `unknown_device` otherwise).
pub const DEVICES_BUCKET: &str = "PULSE_DEVICES";
/// The JetStream stream that holds [`DEVICES_BUCKET`] (a bucket's stream is named `KV_<bucket>`).
pub const DEVICES_STREAM: &str = "KV_PULSE_DEVICES";

/// The key of a device in [`DEVICES_BUCKET`]: `<tenant_id>.<device_id>`. Both ids follow the
/// id rule, so the key is a valid key-value key and names exactly one device.
pub fn device_key(tenant: &TenantId, device: &DeviceId) -> String {
    format!("{tenant}.{device}")
}

/// Every tenant's [`users_subject`], for a gateway's one subscription to them.
pub const USERS_WILDCARD: &str = "pulse.v1.*.users";

/// `pulse.v1.<tenant_id>.users`: changes to a tenant's users that end their connections
/// ([`UserChanged`](crate::UserChanged)). Gateways follow it; browsers never see it.
pub fn users_subject(tenant: &TenantId) -> String {
    format!("{PREFIX}.{tenant}.users")
}

/// The tenant of a [`users_subject`].
pub fn users_subject_tenant(subject: &str) -> Option<TenantId> {
    let tenant = subject
        .strip_prefix(PREFIX)?
        .strip_prefix('.')?
        .strip_suffix(".users")?;
    TenantId::parse(tenant).ok()
}

/// A parsed Pulse subject: what it carries and for whom.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Alerts(TenantId),
    Fleet(TenantId),
    Telemetry(TenantId, DeviceId),
    Events(TenantId, Topic),
}

impl Subject {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Subject::Alerts(t) | Subject::Fleet(t) => t,
            Subject::Telemetry(t, _) | Subject::Events(t, _) => t,
        }
    }

    /// Whether the subject holds a snapshot (only the newest message matters) rather than an
    /// event stream (every message matters).
    pub fn is_snapshot(&self) -> bool {
        !matches!(self, Subject::Events(..))
    }

    /// Parses a concrete subject; wildcards and anything outside the contract are refused.
    pub fn parse(raw: &str) -> Option<Subject> {
        let rest = raw.strip_prefix(PREFIX)?.strip_prefix('.')?;
        let mut tokens = rest.split('.');
        let tenant = TenantId::parse(tokens.next()?).ok()?;
        let subject = match (tokens.next()?, tokens.next(), tokens.next()) {
            ("alerts", None, None) => Subject::Alerts(tenant),
            ("fleet", None, None) => Subject::Fleet(tenant),
            ("events", Some(topic), None) => Subject::Events(tenant, Topic::parse(topic).ok()?),
            ("device", Some(device), Some("telemetry")) => {
                Subject::Telemetry(tenant, DeviceId::parse(device).ok()?)
            }
            _ => return None,
        };
        tokens.next().is_none().then_some(subject)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Alerts(t) => write!(f, "{PREFIX}.{t}.alerts"),
            Subject::Fleet(t) => write!(f, "{PREFIX}.{t}.fleet"),
            Subject::Telemetry(t, d) => write!(f, "{PREFIX}.{t}.device.{d}.telemetry"),
            Subject::Events(t, topic) => write!(f, "{PREFIX}.{t}.events.{topic}"),
        }
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn the_device_bucket_lives_in_the_stream_named_for_it() {
        assert_eq!(DEVICES_STREAM, format!("KV_{DEVICES_BUCKET}"));
    }

    #[test]
    fn builds_the_documented_subjects() {
        let dev = DeviceId::parse("dev-0001").unwrap();
        let topic = Topic::parse("tickets").unwrap();
        assert_eq!(
            Subject::Alerts(t("acme")).to_string(),
            "pulse.v1.acme.alerts"
        );
        assert_eq!(Subject::Fleet(t("acme")).to_string(), "pulse.v1.acme.fleet");
        assert_eq!(
            Subject::Telemetry(t("acme"), dev).to_string(),
            "pulse.v1.acme.device.dev-0001.telemetry"
        );
        assert_eq!(
            Subject::Events(t("acme"), topic).to_string(),
            "pulse.v1.acme.events.tickets"
        );
    }

    #[test]
    fn the_users_subject_round_trips_and_refuses_wildcards() {
        let subject = users_subject(&t("acme"));
        assert_eq!(subject, "pulse.v1.acme.users");
        assert_eq!(users_subject_tenant(&subject), Some(t("acme")));
        assert_eq!(users_subject_tenant("pulse.v1.*.users"), None);
        assert_eq!(users_subject_tenant("pulse.v1.a.b.users"), None);
        assert_eq!(users_subject_tenant("pulse.v1.acme.alerts"), None);
    }

    #[test]
    fn parse_round_trips() {
        for raw in [
            "pulse.v1.acme.alerts",
            "pulse.v1.acme.fleet",
            "pulse.v1.acme.device.dev-1.telemetry",
            "pulse.v1.acme.events.tickets",
        ] {
            let parsed = Subject::parse(raw).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(parsed.to_string(), raw);
            assert_eq!(parsed.tenant().as_str(), "acme");
        }
        assert!(
            Subject::parse("pulse.v1.acme.alerts")
                .unwrap()
                .is_snapshot()
        );
        assert!(
            !Subject::parse("pulse.v1.acme.events.x")
                .unwrap()
                .is_snapshot()
        );
    }

    #[test]
    fn parse_refuses_wildcards_and_strangers() {
        for raw in [
            "",
            "pulse.v1",
            "pulse.v1.>",
            "pulse.v1.*.alerts",
            "pulse.v1.acme.>",
            "pulse.v1.acme.alerts.extra",
            "pulse.v1.acme.device.*.telemetry",
            "pulse.v1.acme.device.dev-1",
            "pulse.v1.acme.events",
            "pulse.v1.acme.events.a.b",
            "pulse.v2.acme.alerts",
            "other.v1.acme.alerts",
            "pulse.v1..alerts",
        ] {
            assert_eq!(Subject::parse(raw), None, "{raw:?}");
        }
    }
}
