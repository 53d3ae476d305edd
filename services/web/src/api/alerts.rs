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

#[derive(Deserialize, IntoParams)]
pub struct AlertParams {
    /// OPEN, ACKNOWLEDGED or CLOSED; all when absent.
    pub status: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<i64>,
    /// Return alerts older than this alert id (from `next` of the previous page).
    pub before: Option<i64>,
    /// Only alerts of this severity or higher (0 or more; the dashboard calls 4 and above
    /// critical). With `status=OPEN`, a page reads only the open alerts at or above it.
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
/// [`PAGE`] of the alerts at or above a severity (`$1` min severity, `$2` before, `$3` limit).
pub const PAGE_MIN_SEVERITY: &str = "SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at \
                                       FROM alerts WHERE severity >= $1 AND alert_id < $2 ORDER BY alert_id DESC LIMIT $3";
/// [`PAGE`] of the alerts in one status at or above a severity (`$1` status, `$2` min
/// severity, `$3` before, `$4` limit): the status's alerts, from `before` down, skipping the
/// lesser ones.
pub const PAGE_IN_STATUS_MIN_SEVERITY: &str = "SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at \
                                                 FROM alerts WHERE status = $1 AND severity >= $2 AND alert_id < $3 ORDER BY alert_id DESC LIMIT $4";
/// [`PAGE`] of the OPEN alerts at or above a severity (`$1` min severity, `$2` before, `$3`
/// limit): the critical alerts a capped `alerts` snapshot leaves out. The status is written in
/// (a generic plan cannot know that a `$n` status is OPEN), and the alerts are read whole
/// before they are paged: ordered by `alert_id` as they are read, or bounded by `before`, a
/// plan (a generic one, not knowing how rare the severity is) walks the tenant's alerts from
/// `before` down and drops every lesser one, which for a rare critical alert behind thousands
/// of others is all of them. Read first, they come from the `alerts_open_by_severity` range
/// from the severity up, and only they; a page costs what reading them all and sorting does.
pub const OPEN_PAGE_MIN_SEVERITY: &str = "WITH at_least AS MATERIALIZED (\
                                              SELECT alert_id, device_id::text, site_id::text, alert_type, severity, summary, status, created_at \
                                                FROM alerts WHERE status = 'OPEN' AND severity >= $1) \
                                          SELECT * FROM at_least WHERE alert_id < $2 ORDER BY alert_id DESC LIMIT $3";

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
        (None, Some(min)) => sqlx::query_as(PAGE_MIN_SEVERITY).bind(min).bind(before),
        (Some(AlertStatus::Open), Some(min)) => sqlx::query_as(OPEN_PAGE_MIN_SEVERITY)
            .bind(min)
            .bind(before),
        (Some(status), Some(min)) => sqlx::query_as(PAGE_IN_STATUS_MIN_SEVERITY)
            .bind(status.as_str())
            .bind(min)
            .bind(before),
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
