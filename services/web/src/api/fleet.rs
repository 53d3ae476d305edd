//! `GET /api/v2/fleet`: the tenant's fleet, shaped as the `fleet` push (with `seq` 0), for
//! clients polling while their WebSocket is down.

use axum::Json;
use axum::extract::State;
use pulse_proto::fleet::{DeviceRow, summarize};
use pulse_proto::{FleetSnapshot, Timestamp};
use time::OffsetDateTime;

use crate::api::applied;
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::begin_as_tenant;

#[utoipa::path(get, path = "/api/v2/fleet", tag = "fleet",
    responses((status = 200, description = "A fleet message as pushed on pulse.v1.<tenant>.fleet, with seq 0", body = Object),
              (status = 401)))]
pub async fn get(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<FleetSnapshot>, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let applied = applied(&mut tx).await?;
    let now: OffsetDateTime = sqlx::query_scalar("SELECT statement_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<(String, String, Option<f64>, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT device_id::text, site_id::text, battery_pct, last_seen_at FROM devices",
    )
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
    // As many devices as the push lists (counts always cover all).
    let (counts, devices) = summarize(now, &rows, applied.thresholds, applied.fleet_devices_cap);
    Ok(Json(FleetSnapshot {
        kind: Default::default(),
        tenant_id: session.tenant,
        seq: 0,
        ts: Timestamp(now),
        counts,
        devices,
    }))
}
