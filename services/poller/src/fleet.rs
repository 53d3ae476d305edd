//! Fleet snapshots: device statuses by the age of their newest reading, and counts.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use pulse_proto::{DeviceStatus, FleetCounts, FleetDevice, TenantId, Timestamp};
use sqlx::PgPool;
use time::OffsetDateTime;

/// A device row as read.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub device_id: String,
    pub site_id: String,
    pub battery_pct: Option<f64>,
    pub last_seen_at: Option<OffsetDateTime>,
}

/// Status thresholds, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub stale_after: Duration,
    pub offline_after: Duration,
}

/// ONLINE under `stale_after`, STALE under `offline_after`, else (or never seen) OFFLINE.
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

/// A tenant's fleet, computed, before it becomes a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub counts: FleetCounts,
    pub devices: Vec<FleetDevice>,
}

impl Fleet {
    /// Computes statuses as of `now`, lists the least healthy devices first, capped.
    pub fn compute(now: OffsetDateTime, rows: &[DeviceRow], t: Thresholds, cap: usize) -> Fleet {
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
        Fleet { counts, devices }
    }

    /// Hash of what matters for change detection: counts, membership, statuses, sites and
    /// batteries. `last_seen_at` moves with every reading and is hashed apart.
    pub fn content_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.counts.hash(&mut h);
        for d in &self.devices {
            d.device_id.hash(&mut h);
            d.site_id.hash(&mut h);
            d.status.hash(&mut h);
            d.battery_pct.map(f64::to_bits).hash(&mut h);
        }
        h.finish()
    }

    pub fn last_seen_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for d in &self.devices {
            d.last_seen_at.hash(&mut h);
        }
        h.finish()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    device_id: String,
    site_id: String,
    battery_pct: Option<f64>,
    last_seen_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// Reads the devices of `tenants` in one query, with the database's clock as "now" (readings
/// are stamped by writers against that clock too).
pub async fn read_devices(
    pool: &PgPool,
    tenants: &[TenantId],
) -> Result<(OffsetDateTime, BTreeMap<TenantId, Vec<DeviceRow>>), sqlx::Error> {
    let ids: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT tenant_id::text, device_id::text, site_id::text, battery_pct, last_seen_at, \
                statement_timestamp() AS now \
           FROM devices WHERE tenant_id = ANY($1::text[])",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut now = OffsetDateTime::now_utc();
    let mut out: BTreeMap<TenantId, Vec<DeviceRow>> =
        tenants.iter().map(|t| (t.clone(), Vec::new())).collect();
    for row in rows {
        now = row.now;
        let Ok(tenant) = TenantId::parse(row.tenant_id) else {
            continue;
        };
        out.entry(tenant).or_default().push(DeviceRow {
            device_id: row.device_id,
            site_id: row.site_id,
            battery_pct: row.battery_pct,
            last_seen_at: row.last_seen_at,
        });
    }
    Ok((now, out))
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
        let fleet = Fleet::compute(now, &rows, T, 2);
        assert_eq!(
            fleet.counts,
            FleetCounts {
                total: 4,
                online: 2,
                stale: 1,
                offline: 1
            }
        );
        let ids: Vec<_> = fleet.devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
    }

    #[test]
    fn last_seen_alone_does_not_change_the_content_hash() {
        let now = datetime!(2026-11-22 12:00:00 UTC);
        let a = Fleet::compute(now, &[row("a", Some(1), now)], T, 10);
        let b = Fleet::compute(now, &[row("a", Some(2), now)], T, 10);
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.last_seen_hash(), b.last_seen_hash());
        let c = Fleet::compute(now, &[row("a", Some(70), now)], T, 10);
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
