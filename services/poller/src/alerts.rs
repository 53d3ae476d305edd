//! Reading alerts snapshots: the open alerts of a set of tenants, in one query.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use pulse_proto::{Alert, AlertStatus, TenantId, Timestamp};
use sqlx::PgPool;
use time::OffsetDateTime;

/// A tenant's open alerts as read, before it becomes a message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenAlerts {
    /// Newest first, at most the cap.
    pub alerts: Vec<Alert>,
    pub total_open: u64,
    /// Every open alert counted by severity, listed or not.
    pub by_severity: BTreeMap<i32, u64>,
}

impl OpenAlerts {
    /// A hash of everything the message would say, to publish only on change.
    pub fn content_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.alerts.hash(&mut h);
        self.total_open.hash(&mut h);
        self.by_severity.hash(&mut h);
        h.finish()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    total: i64,
    severities: Vec<i32>,
    severity_counts: Vec<i64>,
    alert_id: Option<i64>,
    device_id: Option<String>,
    site_id: Option<String>,
    alert_type: Option<String>,
    severity: Option<i32>,
    summary: Option<String>,
    created_at: Option<OffsetDateTime>,
}

/// Reads the open alerts of every tenant in `tenants`: one query whatever their number, each
/// tenant's list served by the partial index on open alerts, with every open alert counted by
/// severity. A tenant without open alerts gets an empty list, which is a snapshot too.
pub async fn read_open(
    pool: &PgPool,
    tenants: &[TenantId],
    cap: u32,
) -> Result<BTreeMap<TenantId, OpenAlerts>, sqlx::Error> {
    let ids: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.tenant_id, c.total, c.severities, c.severity_counts, \
                a.alert_id, a.device_id::text, a.site_id::text, \
                a.alert_type, a.severity, a.summary, a.created_at \
           FROM unnest($1::text[]) AS t(tenant_id) \
          CROSS JOIN LATERAL ( \
                SELECT coalesce(sum(n), 0)::bigint AS total, \
                       coalesce(array_agg(severity ORDER BY severity), '{}') AS severities, \
                       coalesce(array_agg(n ORDER BY severity), '{}') AS severity_counts \
                  FROM (SELECT severity, count(*) AS n FROM alerts \
                         WHERE tenant_id = t.tenant_id AND status = 'OPEN' \
                         GROUP BY severity) s) c \
           LEFT JOIN LATERAL ( \
                SELECT alert_id, device_id, site_id, alert_type, severity, summary, created_at \
                  FROM alerts \
                 WHERE tenant_id = t.tenant_id AND status = 'OPEN' \
                 ORDER BY created_at DESC, alert_id DESC \
                 LIMIT $2) a ON true \
          ORDER BY t.tenant_id, a.created_at DESC, a.alert_id DESC",
    )
    .bind(&ids)
    .bind(i64::from(cap))
    .fetch_all(pool)
    .await?;

    let mut out: BTreeMap<TenantId, OpenAlerts> = tenants
        .iter()
        .map(|t| (t.clone(), OpenAlerts::default()))
        .collect();
    for row in rows {
        let Ok(tenant) = TenantId::parse(row.tenant_id) else {
            continue;
        };
        let entry = out.entry(tenant).or_default();
        entry.total_open = row.total.max(0) as u64;
        if entry.by_severity.is_empty() {
            entry.by_severity = row
                .severities
                .iter()
                .zip(&row.severity_counts)
                .map(|(&severity, &n)| (severity, n.max(0) as u64))
                .collect();
        }
        if let (
            Some(alert_id),
            Some(device_id),
            Some(site_id),
            Some(alert_type),
            Some(severity),
            Some(summary),
            Some(created_at),
        ) = (
            row.alert_id,
            row.device_id,
            row.site_id,
            row.alert_type,
            row.severity,
            row.summary,
            row.created_at,
        ) {
            entry.alerts.push(Alert {
                alert_id,
                device_id,
                site_id,
                alert_type,
                severity,
                summary,
                status: AlertStatus::Open,
                created_at: Timestamp(created_at),
            });
        }
    }
    Ok(out)
}
