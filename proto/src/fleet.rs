//! The one rule for device status, shared by everything that shows a fleet: ONLINE while the
//! newest reading is younger than `stale_after`, STALE while younger than `offline_after`,
//! OFFLINE after that or when the device never reported.

use std::time::Duration;

use time::OffsetDateTime;

use crate::message::{DeviceStatus, FleetCounts, FleetDevice};
use crate::time::Timestamp;

/// Status thresholds; the poller records its own in the database (`pulse_settings`) so every
/// service applies the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub stale_after: Duration,
    pub offline_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(60),
            offline_after: Duration::from_secs(600),
        }
    }
}

/// A device as stored, before its status is known.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub device_id: String,
    pub site_id: String,
    pub battery_pct: Option<f64>,
    pub last_seen_at: Option<OffsetDateTime>,
}

/// The status of a device last seen at `last_seen`, as of `now`.
pub fn status(
    now: OffsetDateTime,
    last_seen: Option<OffsetDateTime>,
    t: Thresholds,
) -> DeviceStatus {
    let Some(seen) = last_seen else {
        return DeviceStatus::Offline;
    };
    // A reading stamped slightly in the future (clock skew) counts as fresh.
    let age = (now - seen).max(time::Duration::ZERO);
    if age < t.stale_after {
        DeviceStatus::Online
    } else if age < t.offline_after {
        DeviceStatus::Stale
    } else {
        DeviceStatus::Offline
    }
}

/// Counts over every device, and the devices listed least healthy first (then by id), capped.
pub fn summarize(
    now: OffsetDateTime,
    rows: &[DeviceRow],
    t: Thresholds,
    cap: usize,
) -> (FleetCounts, Vec<FleetDevice>) {
    let mut counts = FleetCounts::default();
    let mut devices: Vec<FleetDevice> = rows
        .iter()
        .map(|r| {
            let s = status(now, r.last_seen_at, t);
            counts.add(s);
            FleetDevice {
                device_id: r.device_id.clone(),
                site_id: r.site_id.clone(),
                status: s,
                last_seen_at: r.last_seen_at.map(Timestamp),
                battery_pct: r.battery_pct,
            }
        })
        .collect();
    devices.sort_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    devices.truncate(cap);
    (counts, devices)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T: Thresholds = Thresholds {
        stale_after: Duration::from_secs(60),
        offline_after: Duration::from_secs(600),
    };

    #[test]
    fn status_by_age() {
        let now = datetime!(2026-11-22 12:00:00 UTC);
        let ago = |s: i64| Some(now - time::Duration::seconds(s));
        assert_eq!(status(now, ago(0), T), DeviceStatus::Online);
        assert_eq!(status(now, ago(59), T), DeviceStatus::Online);
        assert_eq!(status(now, ago(60), T), DeviceStatus::Stale);
        assert_eq!(status(now, ago(599), T), DeviceStatus::Stale);
        assert_eq!(status(now, ago(600), T), DeviceStatus::Offline);
        assert_eq!(status(now, None, T), DeviceStatus::Offline);
        assert_eq!(status(now, ago(-30), T), DeviceStatus::Online);
    }

    fn row(id: &str, seen_ago: Option<i64>, now: OffsetDateTime) -> DeviceRow {
        DeviceRow {
            device_id: id.into(),
            site_id: "s1".into(),
            battery_pct: Some(50.0),
            last_seen_at: seen_ago.map(|s| now - time::Duration::seconds(s)),
        }
    }

    #[test]
    fn counts_cover_all_and_list_is_capped_least_healthy_first() {
        let now = datetime!(2026-11-22 12:00:00 UTC);
        let rows = vec![
            row("a", Some(1), now),
            row("b", Some(120), now),
            row("c", None, now),
            row("d", Some(5), now),
        ];
        let (counts, devices) = summarize(now, &rows, T, 2);
        assert_eq!(
            counts,
            FleetCounts {
                total: 4,
                online: 2,
                stale: 1,
                offline: 1
            }
        );
        let ids: Vec<_> = devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
    }
}
