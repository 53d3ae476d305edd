//! `GET /api/v2/fleet`: the tenant's fleet, shaped as the `fleet` push (with `seq` 0), for
//! clients polling while their WebSocket is down.
//!
//! When a gateway fails, every dashboard on it polls here at once, so the database does the
//! work: it counts the statuses and hands over only the devices the message lists (the least
//! healthy first, as many as the pushes list), not every device of the tenant. Statuses follow
//! [`pulse_proto::fleet::status`] exactly: ONLINE when seen after `now - stale_after`, STALE
//! when seen after `now - offline_after`, OFFLINE otherwise; ties in order go by device id,
//! byte by byte (`COLLATE "C"`), as the poller sorts them.

use axum::Json;
use axum::extract::State;
use pulse_proto::fleet::{DeviceRow, summarize};
use pulse_proto::{FleetCounts, FleetSnapshot, Timestamp};
use time::OffsetDateTime;

use crate::api::{ApiQuery, NoParams, applied};
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::begin_as_tenant;

/// The tenant's devices by status as of `$1`, with `$2` seconds to STALE and `$3` to OFFLINE.
const COUNTS: &str = "SELECT count(*), \
        count(*) FILTER (WHERE last_seen_at > $1 - make_interval(secs => $2)), \
        count(*) FILTER (WHERE last_seen_at <= $1 - make_interval(secs => $2) \
                           AND last_seen_at > $1 - make_interval(secs => $3)) \
   FROM devices";

/// The `$4` least healthy devices as of `$1` (thresholds as in [`COUNTS`]), then by id.
const LEAST_HEALTHY: &str = "SELECT device_id::text, site_id::text, battery_pct, last_seen_at \
   FROM devices \
  ORDER BY CASE WHEN last_seen_at > $1 - make_interval(secs => $2) THEN 2 \
                WHEN last_seen_at > $1 - make_interval(secs => $3) THEN 1 \
                ELSE 0 END, \
           device_id COLLATE \"C\" \
  LIMIT $4";

#[utoipa::path(get, path = "/api/v2/fleet", tag = "fleet",
    responses((status = 200, description = "A fleet message as pushed on pulse.v1.<tenant>.fleet, with seq 0", body = Object),
              (status = 400, description = "A query parameter: the route takes none"),
              (status = 401)))]
pub async fn get(
    State(state): State<AppState>,
    session: Session,
    _: ApiQuery<NoParams>,
) -> Result<Json<FleetSnapshot>, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let applied = applied(&mut tx).await?;
    let t = applied.thresholds;
    let (stale, offline) = (t.stale_after.as_secs_f64(), t.offline_after.as_secs_f64());
    let now: OffsetDateTime = sqlx::query_scalar("SELECT statement_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    let (total, online, stale_count): (i64, i64, i64) = sqlx::query_as(COUNTS)
        .bind(now)
        .bind(stale)
        .bind(offline)
        .fetch_one(&mut *tx)
        .await?;
    let cap = i64::try_from(applied.fleet_devices_cap).unwrap_or(i64::MAX);
    let rows: Vec<(String, String, Option<f64>, Option<OffsetDateTime>)> =
        sqlx::query_as(LEAST_HEALTHY)
            .bind(now)
            .bind(stale)
            .bind(offline)
            .bind(cap)
            .fetch_all(&mut *tx)
            .await?;
    let rows: Vec<DeviceRow> = rows
        .into_iter()
        .map(
            |(device_id, site_id, battery_pct, last_seen_at)| DeviceRow {
                device_id,
                site_id,
                battery_pct,
                last_seen_at,
            },
        )
        .collect();
    // Statuses and order as the pushes have them; the counts cover every device.
    let (_, devices) = summarize(now, &rows, t, applied.fleet_devices_cap);
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let counts = FleetCounts {
        total: count(total),
        online: count(online),
        stale: count(stale_count),
        offline: count(total - online - stale_count),
    };
    Ok(Json(FleetSnapshot {
        kind: Default::default(),
        tenant_id: session.tenant,
        seq: 0,
        ts: Timestamp(now),
        counts,
        devices,
    }))
}
