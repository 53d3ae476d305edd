//! `GET /api/v2/devices`, `/api/v2/devices/{id}`, `/api/v2/devices/{id}/telemetry`.

use axum::Json;
use axum::extract::State;
use pulse_proto::fleet::status;
use pulse_proto::{DeviceId, DeviceStatus, SiteId, Timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiPath, ApiQuery, NoParams, applied, limit, page};
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::begin_as_tenant;

/// Unknown parameters are refused: a misspelt filter or cursor would silently list everything.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<i64>,
    /// Return devices after this device id (from `next` of the previous page).
    #[param(value_type = Option<String>)]
    pub after: Option<DeviceId>,
    /// Only devices of this site.
    #[param(value_type = Option<String>)]
    pub site_id: Option<SiteId>,
}

/// A device and its status as of the request.
#[derive(Serialize, ToSchema)]
pub struct Device {
    pub device_id: String,
    pub site_id: String,
    #[schema(value_type = String, example = "ONLINE")]
    pub status: DeviceStatus,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<Timestamp>,
    pub battery_pct: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<Device>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A reading, as `SELECT ts, metrics::text AS metrics FROM telemetry` reads it.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Reading {
    #[schema(value_type = String, format = DateTime)]
    #[sqlx(rename = "ts", try_from = "OffsetDateTime")]
    pub timestamp: Timestamp,
    /// Every metric, as the database holds them.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub metrics: StoredJson,
}

/// JSON as the database holds it, not decoded (see [`pulse_proto::message::stored_payload`]):
/// a number past a double keeps its digits, and one a decoded value cannot hold at all
/// (`1e400`, nesting deeper than 128) is listed instead of failing the request.
#[derive(Serialize)]
#[serde(transparent)]
pub struct StoredJson(Box<serde_json::value::RawValue>);

impl TryFrom<String> for StoredJson {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        pulse_proto::message::stored_payload(text).map(StoredJson)
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    /// The newest reading, if any.
    pub latest: Option<Reading>,
}

#[derive(sqlx::FromRow)]
struct Row {
    device_id: String,
    site_id: String,
    battery_pct: Option<f64>,
    last_seen_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

fn device(row: Row, t: pulse_proto::fleet::Thresholds) -> Device {
    Device {
        status: status(row.now, row.last_seen_at, t),
        device_id: row.device_id,
        site_id: row.site_id,
        last_seen_at: row.last_seen_at.map(Timestamp),
        battery_pct: row.battery_pct,
    }
}

/// A page of the tenant's devices from the first (`$1` limit). Each kind of page (after a
/// device or not, of one site or not) is a statement of its own rather than a
/// `$n IS NULL OR …` filter, so that every plan of each, generic or custom, starts in the
/// index range of the page (the tenant's primary-key range, or a site's range of
/// `devices_by_site`) at the page, not at the tenant's first device, dropping the others on
/// the way. Public for the tests that check those plans.
pub const DEVICES: &str = "SELECT device_id::text, site_id::text, battery_pct, last_seen_at, statement_timestamp() AS now \
                             FROM devices ORDER BY device_id LIMIT $1";
/// [`DEVICES`] after a device (`$1` after, `$2` limit).
pub const DEVICES_AFTER: &str = "SELECT device_id::text, site_id::text, battery_pct, last_seen_at, statement_timestamp() AS now \
                                   FROM devices WHERE device_id > $1 ORDER BY device_id LIMIT $2";
/// [`DEVICES`] of one site (`$1` site, `$2` limit).
pub const SITE_DEVICES: &str = "SELECT device_id::text, site_id::text, battery_pct, last_seen_at, statement_timestamp() AS now \
                                  FROM devices WHERE site_id = $1 ORDER BY device_id LIMIT $2";
/// [`DEVICES`] of one site after a device (`$1` after, `$2` site, `$3` limit).
pub const SITE_DEVICES_AFTER: &str = "SELECT device_id::text, site_id::text, battery_pct, last_seen_at, statement_timestamp() AS now \
                                        FROM devices WHERE device_id > $1 AND site_id = $2 ORDER BY device_id LIMIT $3";

#[utoipa::path(get, path = "/api/v2/devices", tag = "devices", params(ListParams),
    responses((status = 200, body = DevicePage), (status = 400), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<DevicePage>, ApiError> {
    let limit = limit(p.limit, 100)?;
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let t = applied(&mut tx).await?.thresholds;
    let query = match (&p.after, &p.site_id) {
        (None, None) => sqlx::query_as(DEVICES),
        (Some(after), None) => sqlx::query_as(DEVICES_AFTER).bind(after.as_str()),
        (None, Some(site)) => sqlx::query_as(SITE_DEVICES).bind(site.as_str()),
        (Some(after), Some(site)) => sqlx::query_as(SITE_DEVICES_AFTER)
            .bind(after.as_str())
            .bind(site.as_str()),
    };
    let rows: Vec<Row> = query.bind(limit + 1).fetch_all(&mut *tx).await?;
    let items: Vec<Device> = rows.into_iter().map(|r| device(r, t)).collect();
    let (items, next) = page(items, limit, |d| d.device_id.clone());
    Ok(Json(DevicePage { items, next }))
}

#[utoipa::path(get, path = "/api/v2/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceDetail), (status = 400), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    session: Session,
    ApiPath(device_id): ApiPath<DeviceId>,
    _: ApiQuery<NoParams>,
) -> Result<Json<DeviceDetail>, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let t = applied(&mut tx).await?.thresholds;
    let row: Option<Row> = sqlx::query_as(
        "SELECT device_id::text, site_id::text, battery_pct, last_seen_at, statement_timestamp() AS now \
           FROM devices WHERE device_id = $1",
    )
    .bind(device_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(ApiError::NotFound("device"))?;
    let latest: Option<Reading> = sqlx::query_as(
        "SELECT ts, metrics::text AS metrics FROM telemetry WHERE device_id = $1 ORDER BY ts DESC, xid DESC LIMIT 1",
    )
    .bind(device_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(Json(DeviceDetail {
        device: device(row, t),
        latest,
    }))
}

/// Unknown parameters are refused: a misspelt filter or cursor would silently list everything.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TelemetryParams {
    /// Only readings after this instant (RFC 3339).
    pub since: Option<String>,
    /// Most readings returned, 1–1000 (default 100): the newest ones.
    pub limit: Option<i64>,
}

/// `since` as an instant in UTC. RFC 3339 allows year 9999 with a negative offset, an instant
/// past the last one `time` holds in UTC: the database driver would panic converting it.
fn since(s: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::BadRequest(format!("since must be RFC 3339, got {s:?}")))?
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| ApiError::BadRequest(format!("since is after year 9999 in UTC: {s:?}")))
}

#[derive(Serialize, ToSchema)]
pub struct ReadingPage {
    /// Oldest first, ready to chart.
    pub items: Vec<Reading>,
}

/// A device's newest readings (`$1` device, `$2` limit), newest first. Of readings with one
/// timestamp, the one written last (the poller's order, `(ts, xid)`) comes first here and last
/// in the page, so that it is the one a client keeps, as it is the one pushed last.
pub const READINGS: &str = "SELECT ts, metrics::text AS metrics FROM telemetry WHERE device_id = $1 ORDER BY ts DESC, xid DESC LIMIT $2";
/// [`READINGS`] after an instant (`$1` device, `$2` since, `$3` limit). A statement of its own
/// rather than a `$n IS NULL OR ts > $n` filter: a generic plan of that (which PostgreSQL takes
/// for a statement a connection has run a few times) walks the device's whole history to find
/// the few readings after `since`, on every poll. Public for the test that checks the plans.
pub const READINGS_SINCE: &str = "SELECT ts, metrics::text AS metrics FROM telemetry WHERE device_id = $1 AND ts > $2 \
                                    ORDER BY ts DESC, xid DESC LIMIT $3";

#[utoipa::path(get, path = "/api/v2/devices/{device_id}/telemetry", tag = "devices",
    params(("device_id" = String, Path, description = "Device id"), TelemetryParams),
    responses((status = 200, body = ReadingPage), (status = 400), (status = 401), (status = 404)))]
pub async fn telemetry(
    State(state): State<AppState>,
    session: Session,
    ApiPath(device_id): ApiPath<DeviceId>,
    ApiQuery(p): ApiQuery<TelemetryParams>,
) -> Result<Json<ReadingPage>, ApiError> {
    let limit = limit(p.limit, 100)?;
    let since = p.since.as_deref().map(since).transpose()?;
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM devices WHERE device_id = $1")
        .bind(device_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound("device"));
    }
    let query = match since {
        None => sqlx::query_as(READINGS).bind(device_id.as_str()),
        Some(since) => sqlx::query_as(READINGS_SINCE)
            .bind(device_id.as_str())
            .bind(since),
    };
    let mut items: Vec<Reading> = query.bind(limit).fetch_all(&mut *tx).await?;
    items.reverse();
    Ok(Json(ReadingPage { items }))
}
