//! `GET /api/v2/alerts`.

use axum::Json;
use axum::extract::State;
use pulse_proto::{Alert, AlertStatus, Timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiQuery, limit, page};
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::begin_as_tenant;

/// Unknown parameters are refused: a misspelt filter or cursor would silently list everything.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// OPEN, ACKNOWLEDGED or CLOSED; all when absent.
    pub status: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<i64>,
    /// Return alerts older than this alert id (from `next` of the previous page).
    pub before: Option<i64>,
    /// Only alerts of this severity or higher (0 to 2147483647, the range of a severity;
    /// outside it: 400; the dashboard calls 4 and above critical). A page reads at most a page
    /// of each severity present at or above it, never the lesser alerts.
    pub min_severity: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    /// Newest first by `alert_id`, the order the database recorded them (the `alerts` push
    /// orders by `created_at`, which differs only for alerts written with an earlier
    /// `created_at` than alerts before them); each shaped as in the push.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Alert>,
    /// Pass as `before` for the next page; null on the last page.
    pub next: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    alert_id: i64,
    device_id: String,
    site_id: String,
    alert_type: String,
    severity: i32,
    summary: String,
    status: String,
    created_at: OffsetDateTime,
}

/// A page of the tenant's alerts, newest first (`$1` before, `$2` limit). One statement per
/// filter, with no `$n IS NULL OR …`, so that every plan of it, generic or custom, walks the
/// tenant's own index (`alerts_by_tenant`, `alerts_by_tenant_status`) from `before` down.
/// Public for the test that checks those plans.
pub const PAGE: &str = "SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at \
                          FROM alerts WHERE alert_id < $1 ORDER BY alert_id DESC LIMIT $2";
/// [`PAGE`] of the alerts in one status (`$1` status, `$2` before, `$3` limit).
pub const PAGE_IN_STATUS: &str = "SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at \
                                    FROM alerts WHERE status = $1 AND alert_id < $2 ORDER BY alert_id DESC LIMIT $3";
/// [`PAGE`] of the alerts in some statuses at or above a severity (`$1` statuses, `$2` min
/// severity, `$3` before, `$4` limit): the critical alerts a capped `alerts` snapshot leaves
/// out, or any status's.
///
/// Filtered as a plan walks the tenant's alerts (or a status's) from `before` down, a page
/// drops every lesser alert on the way, which for a rare critical alert behind thousands of
/// others is all of them; read from a severity index and sorted, it costs every alert at or
/// above the severity. Both are plans PostgreSQL takes for a plain statement, depending on its
/// estimates. Here every read is a one-row probe of `alerts_by_tenant_status_severity` in that
/// index's order, which no estimate turns into a scan. `levels` finds each (status, severity)
/// present at or above the severity; `merge` holds a cursor per level, starting at `before`,
/// and takes the newest head of them one at a time, stepping that level's cursor down (a
/// merge of the levels' lists, each newest first); the page is what it took, read by id.
/// A page reads its own alerts twice, and two rows per level.
pub const PAGE_MIN_SEVERITY: &str = "WITH RECURSIVE levels (status, severity) AS (\
    SELECT s.status, (SELECT a.severity FROM alerts a WHERE a.status = s.status AND a.severity >= $2 \
                       ORDER BY a.severity LIMIT 1) \
      FROM unnest($1::text[]) AS s (status) \
    UNION ALL \
    SELECT l.status, (SELECT a.severity FROM alerts a WHERE a.status = l.status AND a.severity > l.severity \
                       ORDER BY a.severity LIMIT 1) \
      FROM levels l WHERE l.severity IS NOT NULL\
), merge (statuses, severities, heads, taken, n) AS (\
    SELECT array_agg(status), array_agg(severity), array_agg($3::bigint), NULL::bigint, 0 \
      FROM levels WHERE severity IS NOT NULL \
    UNION ALL \
    SELECT m.statuses, m.severities, \
           m.heads[:k - 1] \
             || (SELECT a.alert_id FROM alerts a \
                  WHERE a.status = m.statuses[k] AND a.severity >= m.severities[k] \
                    AND (a.severity, a.alert_id) < (m.severities[k], m.heads[k]) \
                  ORDER BY a.severity DESC, a.alert_id DESC LIMIT 1) \
             || m.heads[k + 1:], \
           m.heads[k], m.n + (m.heads[k] < $3)::int \
      FROM merge m CROSS JOIN LATERAL (SELECT k FROM generate_subscripts(m.heads, 1) AS k \
                                        WHERE m.heads[k] IS NOT NULL ORDER BY m.heads[k] DESC LIMIT 1) AS pick \
     WHERE m.n < $4\
) \
SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at FROM alerts \
 WHERE alert_id = ANY (ARRAY(SELECT taken FROM merge WHERE taken < $3)) \
 ORDER BY alert_id DESC";

#[utoipa::path(get, path = "/api/v2/alerts", tag = "alerts", params(AlertParams),
    responses((status = 200, body = AlertPage), (status = 400), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(p): ApiQuery<AlertParams>,
) -> Result<Json<AlertPage>, ApiError> {
    let limit = limit(p.limit, 100)?;
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(AlertStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status must be OPEN, ACKNOWLEDGED or CLOSED, got {s:?}"
            ))
        })?),
    };
    let min_severity = match p.min_severity {
        Some(n) if n < 0 => {
            return Err(ApiError::BadRequest(format!(
                "min_severity must be 0 or more, got {n}"
            )));
        }
        // Every alert's severity is 0 or more: no filter, and the unfiltered page's plans.
        Some(0) => None,
        n => n,
    };
    let before = p.before.unwrap_or(i64::MAX);
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let rows: Vec<Row> = match (status, min_severity) {
        (None, None) => sqlx::query_as(PAGE).bind(before),
        (Some(status), None) => sqlx::query_as(PAGE_IN_STATUS)
            .bind(status.as_str())
            .bind(before),
        (status, Some(min)) => {
            let statuses = status
                .as_ref()
                .map_or(&AlertStatus::ALL[..], std::slice::from_ref);
            sqlx::query_as(PAGE_MIN_SEVERITY)
                .bind(statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .bind(min)
                .bind(before)
        }
    }
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    let items: Vec<Alert> = rows
        .into_iter()
        .map(|r| Alert {
            alert_id: r.alert_id,
            device_id: r.device_id,
            site_id: r.site_id,
            alert_type: r.alert_type,
            severity: r.severity,
            summary: r.summary,
            status: AlertStatus::parse(&r.status).unwrap_or(AlertStatus::Open),
            created_at: Timestamp(r.created_at),
        })
        .collect();
    let (items, next) = page(items, limit, |a| a.alert_id);
    Ok(Json(AlertPage { items, next }))
}
