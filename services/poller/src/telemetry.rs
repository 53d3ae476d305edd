//! Telemetry: the newest reading of every device that reported since the last read.
//!
//! # The watermark
//! Row ids and timestamps are both unsafe watermarks: a transaction that took an earlier id, or
//! wrote an earlier timestamp, may commit after a later one was read, and would be skipped for
//! ever. Each row instead records the id of the transaction that wrote it (`xid`, stamped by a
//! trigger). Every read runs in one statement that also returns its snapshot's `xmin`: every
//! transaction below `xmin` had finished when the statement ran, so its rows were visible then.
//! The next read asks for `xid >= xmin of the previous read`, which covers every transaction
//! that might have been running, however late it commits. Rows in that window may be seen twice;
//! a reading is published only when it is newer than the last one published for its device, so
//! nothing is published twice and nothing older replaces something newer.
//!
//! A long-running writing transaction holds `xmin` back and widens the window re-read each time,
//! never the other way round: the cost is work, never a lost reading.
//!
//! # Corrections
//! A reading rewritten at the same timestamp (an `UPDATE` of its metrics, or a second row with
//! that `ts`) is a correction and goes out too: readings are ordered by `(ts, xid)`, so of two
//! rows with one timestamp the one written last is the device's newest, and the same row read
//! again in an overlapping window is not newer than itself.

use std::collections::HashMap;

use pulse_proto::{DeviceId, TenantId};
use serde_json::value::RawValue;
use sqlx::PgPool;
use time::OffsetDateTime;

/// One reading, the newest of its device in the window read.
#[derive(Debug, Clone)]
pub struct Reading {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub ts: OffsetDateTime,
    /// The transaction that wrote it: orders readings with the same `ts`.
    pub xid: u64,
    /// As the database holds them, not decoded (see [`pulse_proto::message::stored_payload`]):
    /// a number or a nesting a decoded map cannot hold would otherwise fail the whole read,
    /// and with it the telemetry of every tenant.
    pub metrics: Box<RawValue>,
}

impl Reading {
    /// What makes one reading of a device newer than another.
    pub fn version(&self) -> Version {
        (self.ts, self.xid)
    }
}

/// A reading's place in its device's order: timestamp, then writing transaction.
pub type Version = (OffsetDateTime, u64);

#[derive(sqlx::FromRow)]
struct Row {
    xmin: String,
    tenant_id: Option<String>,
    device_id: Option<String>,
    ts: Option<OffsetDateTime>,
    xid: Option<String>,
    /// `jsonb::text`: an object (the table's check).
    metrics: Option<String>,
}

/// Where reading resumes, and what was already published.
#[derive(Debug, Default)]
pub struct Cursor {
    /// `None` until the first read, which takes the newest reading of every device.
    watermark: Option<u64>,
    published: HashMap<(TenantId, DeviceId), Version>,
}

/// A read's result: readings to publish and the watermark to move to once they are.
pub struct Batch {
    pub readings: Vec<Reading>,
    pub next_watermark: u64,
}

impl Cursor {
    /// Reads what is new since the watermark (or everything's latest, the first time), keeping
    /// only readings newer than what was published for their device.
    pub async fn read(&self, pool: &PgPool) -> Result<Batch, sqlx::Error> {
        let rows: Vec<Row> =
            match self.watermark {
                None => sqlx::query_as(
                    "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) \
                     SELECT snap.xmin, r.tenant_id, r.device_id, r.ts, r.xid, r.metrics \
                       FROM snap LEFT JOIN LATERAL ( \
                            SELECT d.tenant_id::text, d.device_id::text, l.ts, l.xid::text, \
                                   l.metrics::text AS metrics \
                              FROM devices d \
                             CROSS JOIN LATERAL ( \
                                   SELECT ts, xid, metrics FROM telemetry t \
                                    WHERE t.tenant_id = d.tenant_id AND t.device_id = d.device_id \
                                    ORDER BY ts DESC, xid DESC LIMIT 1) l) r ON true",
                )
                .fetch_all(pool)
                .await?,
                Some(watermark) => sqlx::query_as(
                    "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) \
                     SELECT snap.xmin, r.tenant_id, r.device_id, r.ts, r.xid, r.metrics \
                       FROM snap LEFT JOIN LATERAL ( \
                            SELECT DISTINCT ON (tenant_id, device_id) \
                                   tenant_id, device_id, ts, xid::text, metrics::text AS metrics \
                              FROM telemetry \
                             WHERE xid >= $1::text::xid8 \
                             ORDER BY tenant_id, device_id, ts DESC, xid DESC) r ON true",
                )
                .bind(watermark.to_string())
                .fetch_all(pool)
                .await?,
            };
        let mut next_watermark = self.watermark.unwrap_or(0);
        let mut readings = Vec::with_capacity(rows.len());
        for row in rows {
            if let Ok(x) = row.xmin.parse::<u64>() {
                next_watermark = x;
            }
            let (Some(tenant), Some(device), Some(ts), Some(xid), Some(metrics)) =
                (row.tenant_id, row.device_id, row.ts, row.xid, row.metrics)
            else {
                continue;
            };
            let (Ok(tenant), Ok(device), Ok(xid)) = (
                TenantId::parse(tenant),
                DeviceId::parse(device),
                xid.parse::<u64>(),
            ) else {
                continue;
            };
            if self
                .published
                .get(&(tenant.clone(), device.clone()))
                .is_some_and(|last| *last >= (ts, xid))
            {
                continue;
            }
            let Ok(metrics) = pulse_proto::message::stored_payload(metrics) else {
                continue;
            };
            readings.push(Reading {
                tenant,
                device,
                ts,
                xid,
                metrics,
            });
        }
        Ok(Batch {
            readings,
            next_watermark,
        })
    }

    /// Records a reading as published.
    pub fn mark_published(&mut self, tenant: TenantId, device: DeviceId, version: Version) {
        let slot = self.published.entry((tenant, device)).or_insert(version);
        if *slot < version {
            *slot = version;
        }
    }

    /// Moves the watermark; only once every reading of the batch was published.
    pub fn advance(&mut self, watermark: u64) {
        self.watermark = Some(watermark);
    }

    /// Forgets everything: the next read republishes every device's newest reading.
    pub fn reset(&mut self) {
        *self = Cursor::default();
    }

    /// Forgets the devices of tenants that no longer exist.
    pub fn retain_tenants(&mut self, keep: impl Fn(&TenantId) -> bool) {
        self.published.retain(|(t, _), _| keep(t));
    }

    /// Forgets the devices `keep` says no longer exist.
    pub fn retain_devices(&mut self, keep: impl Fn(&TenantId, &DeviceId) -> bool) {
        self.published.retain(|(t, d), _| keep(t, d));
    }

    /// How many devices have a reading recorded as published.
    pub fn devices_recorded(&self) -> usize {
        self.published.len()
    }
}
