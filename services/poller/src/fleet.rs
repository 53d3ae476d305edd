//! Fleet snapshots: device statuses by the age of their newest reading, and counts.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use pulse_proto::{FleetCounts, FleetDevice, TenantId};
use sqlx::PgPool;
use time::OffsetDateTime;

pub use pulse_proto::fleet::{DeviceRow, Thresholds, status};

/// A tenant's fleet, computed, before it becomes a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub counts: FleetCounts,
    pub devices: Vec<FleetDevice>,
}

impl Fleet {
    /// Computes statuses as of `now`, lists the least healthy devices first, capped.
    pub fn compute(now: OffsetDateTime, rows: &[DeviceRow], t: Thresholds, cap: usize) -> Fleet {
        let (counts, devices) = pulse_proto::fleet::summarize(now, rows, t, cap);
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
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    const T: Thresholds = Thresholds {
        stale_after: Duration::from_secs(60),
        offline_after: Duration::from_secs(600),
    };

    fn row(id: &str, seen_ago: i64, now: OffsetDateTime) -> DeviceRow {
        DeviceRow {
            device_id: id.into(),
            site_id: "s1".into(),
            battery_pct: Some(50.0),
            last_seen_at: Some(now - time::Duration::seconds(seen_ago)),
        }
    }

    #[test]
    fn last_seen_alone_does_not_change_the_content_hash() {
        let now = datetime!(2026-11-22 12:00:00 UTC);
        let a = Fleet::compute(now, &[row("a", 1, now)], T, 10);
        let b = Fleet::compute(now, &[row("a", 2, now)], T, 10);
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.last_seen_hash(), b.last_seen_hash());
        let c = Fleet::compute(now, &[row("a", 70, now)], T, 10);
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
