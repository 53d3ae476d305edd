//! Fleet snapshots: device statuses by the age of their newest reading, and counts.

use std::collections::{BTreeMap, HashMap};
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

/// A device of the tenants read, or none (`device_id` null) when they have none: the row
/// still carries the database's clock.
#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: Option<String>,
    device_id: Option<String>,
    site_id: Option<String>,
    battery_pct: Option<f64>,
    last_seen_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// Reads the devices of `tenants` in one query, with the database's clock as "now" (readings
/// are stamped by writers against that clock too), whether or not they have any devices.
pub async fn read_devices(
    pool: &PgPool,
    tenants: &[TenantId],
) -> Result<(OffsetDateTime, BTreeMap<TenantId, Vec<DeviceRow>>), sqlx::Error> {
    let ids: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT d.tenant_id::text, d.device_id::text, d.site_id::text, d.battery_pct, \
                d.last_seen_at, clock.now \
           FROM (SELECT statement_timestamp() AS now) clock \
           LEFT JOIN devices d ON d.tenant_id = ANY($1::text[])",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut now = OffsetDateTime::now_utc();
    let mut out: BTreeMap<TenantId, Vec<DeviceRow>> =
        tenants.iter().map(|t| (t.clone(), Vec::new())).collect();
    for row in rows {
        now = row.now;
        let (Some(tenant), Some(device_id), Some(site_id)) =
            (row.tenant_id, row.device_id, row.site_id)
        else {
            continue; // no devices: the clock alone
        };
        let Ok(tenant) = TenantId::parse(tenant) else {
            continue;
        };
        out.entry(tenant).or_default().push(DeviceRow {
            device_id,
            site_id,
            battery_pct: row.battery_pct,
            last_seen_at: row.last_seen_at,
        });
    }
    Ok((now, out))
}

/// The first instant after `now` at which a device of `rows` changes status by time alone
/// (ONLINE to STALE, STALE to OFFLINE), as [`status`] tells it; `None` when none will.
pub fn next_transition(
    now: OffsetDateTime,
    rows: &[DeviceRow],
    t: Thresholds,
) -> Option<OffsetDateTime> {
    rows.iter()
        .filter_map(|row| {
            let seen = row.last_seen_at?;
            // A stamp near the end of time (a device's clock gone wrong) has no change after it.
            [t.stale_after, t.offline_after]
                .into_iter()
                .filter_map(|after| seen.checked_add(time::Duration::try_from(after).ok()?))
                .find(|at| *at > now)
        })
        .min()
}

/// What the safety net compares between two looks at a tenant's devices, without reading
/// them ([`read_fingerprints`]). A tenant with no devices has the default one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Which devices there are, with their sites and batteries, and how many are seen within
    /// each threshold.
    pub content: String,
    /// When each was last seen.
    pub seen: String,
}

/// A [`Fingerprint`] of each of `tenants` that has devices, with the database's clock as
/// "now": one aggregate row per tenant instead of a row per device.
pub async fn read_fingerprints(
    pool: &PgPool,
    tenants: &[TenantId],
    t: Thresholds,
) -> Result<(OffsetDateTime, HashMap<TenantId, Fingerprint>), sqlx::Error> {
    let ids: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
    let mut tx = pool.begin().await?;
    let now: OffsetDateTime = sqlx::query_scalar("SELECT statement_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    // Devices seen within a threshold are counted by the database's clock: a device that
    // reports again after a gap changes them, whether or not its notification arrives.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tenant_id::text, \
                concat_ws(':', count(*), \
                    count(*) FILTER (WHERE last_seen_at > $2 - make_interval(secs => $3)), \
                    count(*) FILTER (WHERE last_seen_at > $2 - make_interval(secs => $4)), \
                    sum(hashtextextended( \
                        device_id || '/' || site_id || '/' || coalesce(battery_pct::text, '-'), 0))), \
                concat_ws(':', count(last_seen_at), sum(extract(epoch FROM last_seen_at))) \
           FROM devices WHERE tenant_id = ANY($1::text[]) GROUP BY tenant_id",
    )
    .bind(&ids)
    .bind(now)
    .bind(t.stale_after.as_secs_f64())
    .bind(t.offline_after.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let prints = rows
        .into_iter()
        .filter_map(|(tenant, content, seen)| {
            Some((TenantId::parse(tenant).ok()?, Fingerprint { content, seen }))
        })
        .collect();
    Ok((now, prints))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pulse_proto::DeviceStatus;
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
    fn the_next_transition_is_the_first_status_change_by_time_alone() {
        let now = datetime!(2026-11-22 12:00:00 UTC);
        let never = DeviceRow {
            last_seen_at: None,
            ..row("never", 0, now)
        };
        // ONLINE for 20 more seconds; STALE for 100 more; OFFLINE for good.
        let rows = [
            row("a", 40, now),
            row("b", 500, now),
            row("c", 900, now),
            never,
        ];
        let next = next_transition(now, &rows, T).unwrap();
        assert_eq!(next, now + time::Duration::seconds(20));
        assert_eq!(status(next, rows[0].last_seen_at, T), DeviceStatus::Stale);
        assert_eq!(
            next_transition(now, &rows[1..], T),
            Some(now + time::Duration::seconds(100))
        );
        assert_eq!(next_transition(now, &rows[2..], T), None);
        // At the very instant of a change, the next one is the one after it.
        let at = now + time::Duration::seconds(20);
        assert_eq!(
            next_transition(at, &rows[..1], T),
            Some(now + time::Duration::seconds(560))
        );
        // A reading stamped ahead of the clock is ONLINE until its stamp plus `stale_after`.
        assert_eq!(
            next_transition(now, &[row("ahead", -5, now)], T),
            Some(now + time::Duration::seconds(65))
        );
        // One stamped at the end of time: ONLINE for good, and no panic.
        let end = DeviceRow {
            last_seen_at: Some(datetime!(9999-12-31 23:59:59 UTC)),
            ..row("end", 0, now)
        };
        assert_eq!(next_transition(now, &[end], T), None);
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
