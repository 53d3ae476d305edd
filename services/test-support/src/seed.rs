//! Rows the tests of several crates seed a migrated [`ScratchDb`] with: a tenant with its
//! devices, open and closed alerts, telemetry readings. Written once so that every crate's tests
//! mean the same thing by "a tenant with three devices".

use serde_json::Value;

use crate::db::ScratchDb;
use crate::unique;

impl ScratchDb {
    /// Creates a tenant with `devices` devices `dev-1`… on site `site-1`; returns its id
    /// (`label` with a random suffix).
    pub async fn tenant(&self, label: &str, devices: usize) -> String {
        let tenant = unique(label);
        if let Err(e) = sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)")
            .bind(&tenant)
            .execute(&self.pool)
            .await
        {
            panic!("cannot insert tenant {tenant}: {e}");
        }
        for i in 1..=devices {
            if let Err(e) = sqlx::query(
                "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
                 VALUES ($1, $2, 'site-1', 80)",
            )
            .bind(&tenant)
            .bind(format!("dev-{i}"))
            .execute(&self.pool)
            .await
            {
                panic!("cannot insert device dev-{i} of {tenant}: {e}");
            }
        }
        tenant
    }

    /// Opens a `temp_high` alert of severity 4 on `device` (site `site-1`); returns its id.
    pub async fn open_alert(&self, tenant: &str, device: &str, summary: &str) -> i64 {
        let inserted = sqlx::query_scalar(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
             VALUES ($1, $2, 'site-1', 'temp_high', 4, $3) RETURNING alert_id",
        )
        .bind(tenant)
        .bind(device)
        .bind(summary)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => id,
            Err(e) => panic!("cannot open an alert on {tenant}/{device}: {e}"),
        }
    }

    /// Closes alert `alert_id` now.
    pub async fn close_alert(&self, alert_id: i64) {
        if let Err(e) = sqlx::query(
            "UPDATE alerts SET status = 'CLOSED', closed_at = now() WHERE alert_id = $1",
        )
        .bind(alert_id)
        .execute(&self.pool)
        .await
        {
            panic!("cannot close alert {alert_id}: {e}");
        }
    }

    /// Writes a telemetry reading of `device`, timestamped now.
    pub async fn reading(&self, tenant: &str, device: &str, metrics: Value) {
        if let Err(e) = sqlx::query(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ($1, $2, now(), $3)",
        )
        .bind(tenant)
        .bind(device)
        .bind(sqlx::types::Json(metrics))
        .execute(&self.pool)
        .await
        {
            panic!("cannot write a reading of {tenant}/{device}: {e}");
        }
    }
}
