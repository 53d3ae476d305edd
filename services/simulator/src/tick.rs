//! One step of the simulation written to PostgreSQL: the readings of every reporting device in
//! one insert, the batteries that changed, and each tenant's alert change. Never
//! `devices.last_seen_at`: the telemetry trigger keeps it equal to the newest reading.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::alerts::AlertChange;
use crate::simulator::{BATTERY_WRITE_EVERY, Simulator};

impl Simulator {
    /// One step: telemetry of every reporting device in one insert, changed batteries every
    /// [`BATTERY_WRITE_EVERY`], and at most one alert change per tenant.
    pub(crate) async fn tick(&mut self, pool: &PgPool, now: Duration) -> anyhow::Result<()> {
        let readings = self.step(now);
        self.stats.quiet_devices = self.devices.len() - readings.len();
        if !readings.is_empty() {
            let ts = OffsetDateTime::now_utc();
            let mut tenant_ids = Vec::with_capacity(readings.len());
            let mut device_ids = Vec::with_capacity(readings.len());
            let mut metrics = Vec::with_capacity(readings.len());
            for (i, reading) in readings {
                let device = &self.devices[i];
                tenant_ids.push(self.tenant_ids[device.tenant].as_str());
                device_ids.push(device.device_id.as_str());
                metrics.push(reading);
            }
            let stamps = vec![ts; metrics.len()];
            // Readings of devices (or tenants) deleted meanwhile are left out: one of them
            // would fail the whole statement, tick after tick, for every tenant.
            let written = sqlx::query(
                "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
                 SELECT r.* FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) \
                             AS r(tenant_id, device_id, ts, metrics) \
                  WHERE EXISTS (SELECT 1 FROM devices d \
                                 WHERE d.tenant_id = r.tenant_id AND d.device_id = r.device_id)",
            )
            .bind(&tenant_ids)
            .bind(&device_ids)
            .bind(&stamps)
            .bind(&metrics)
            .execute(pool)
            .await
            .context("cannot write telemetry")?
            .rows_affected();
            self.stats.rows += written;
        }

        if now >= self.next_battery_write {
            self.write_batteries(pool).await?;
            self.next_battery_write = now + BATTERY_WRITE_EVERY;
        }

        let open: Vec<i64> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM alerts a \
                      WHERE a.tenant_id = t.tenant_id AND a.status = 'OPEN') \
               FROM UNNEST($1::text[]) WITH ORDINALITY AS t(tenant_id, n) \
              ORDER BY t.n",
        )
        .bind(&self.tenant_ids)
        .fetch_all(pool)
        .await
        .context("cannot count open alerts")?;
        self.stats.open_alerts = open.iter().sum();
        for (tenant, count) in open.into_iter().enumerate() {
            if let Some(change) = self.plan_alert(tenant, count, now) {
                self.apply_alert(pool, tenant, change).await?;
            }
        }
        Ok(())
    }

    async fn write_batteries(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let changes = self.battery_changes();
        if changes.is_empty() {
            return Ok(());
        }
        let mut tenant_ids = Vec::with_capacity(changes.len());
        let mut device_ids = Vec::with_capacity(changes.len());
        let mut values = Vec::with_capacity(changes.len());
        for &(i, value) in &changes {
            let device = &self.devices[i];
            tenant_ids.push(self.tenant_ids[device.tenant].as_str());
            device_ids.push(device.device_id.as_str());
            values.push(value);
        }
        let updated = sqlx::query(
            "UPDATE devices AS d SET battery_pct = u.battery_pct \
               FROM UNNEST($1::text[], $2::text[], $3::float8[]) \
                    AS u(tenant_id, device_id, battery_pct) \
              WHERE d.tenant_id = u.tenant_id AND d.device_id = u.device_id",
        )
        .bind(&tenant_ids)
        .bind(&device_ids)
        .bind(&values)
        .execute(pool)
        .await
        .context("cannot write battery levels")?
        .rows_affected();
        for (i, value) in changes {
            self.devices[i].stored_battery = Some(value);
        }
        self.stats.battery_updates += updated;
        Ok(())
    }

    async fn apply_alert(
        &mut self,
        pool: &PgPool,
        tenant: usize,
        change: AlertChange,
    ) -> anyhow::Result<()> {
        let tenant_id = &self.tenant_ids[tenant];
        match change {
            AlertChange::Insert(alert) => {
                // Not for a device (or tenant) deleted meanwhile.
                let opened = sqlx::query(
                    "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
                     SELECT $1, $2, $3, $4, $5, $6 \
                      WHERE EXISTS (SELECT 1 FROM devices WHERE tenant_id = $1 AND device_id = $2)",
                )
                .bind(tenant_id)
                .bind(&alert.device_id)
                .bind(&alert.site_id)
                .bind(alert.kind.as_str())
                .bind(alert.severity)
                .bind(&alert.summary)
                .execute(pool)
                .await
                .with_context(|| format!("cannot open an alert for tenant {tenant_id}"))?
                .rows_affected();
                self.stats.alerts_opened += opened;
            }
            AlertChange::Acknowledge => {
                self.stats.alerts_acknowledged += update_random_alert(
                    pool,
                    tenant_id,
                    "acknowledge",
                    "UPDATE alerts SET status = 'ACKNOWLEDGED' \
                      WHERE status = 'OPEN' AND alert_id = ( \
                            SELECT alert_id FROM alerts \
                             WHERE tenant_id = $1 AND status = 'OPEN' \
                             ORDER BY random() LIMIT 1)",
                )
                .await?;
            }
            AlertChange::Close => {
                self.stats.alerts_closed += update_random_alert(
                    pool,
                    tenant_id,
                    "close",
                    "UPDATE alerts SET status = 'CLOSED', closed_at = now() \
                      WHERE status <> 'CLOSED' AND alert_id = ( \
                            SELECT alert_id FROM alerts \
                             WHERE tenant_id = $1 AND status IN ('OPEN', 'ACKNOWLEDGED') \
                             ORDER BY random() LIMIT 1)",
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Runs `sql`, an update of one alert of `tenant_id` picked at random (`$1` is the tenant),
/// and returns how many rows it changed: none when the tenant had no alert to `verb`.
async fn update_random_alert(
    pool: &PgPool,
    tenant_id: &str,
    verb: &str,
    sql: &str,
) -> anyhow::Result<u64> {
    let changed = sqlx::query(sql)
        .bind(tenant_id)
        .execute(pool)
        .await
        .with_context(|| format!("cannot {verb} an alert of tenant {tenant_id}"))?;
    Ok(changed.rows_affected())
}
