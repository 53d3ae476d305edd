//! The tenant REST API under `/api/v2`: devices, telemetry, alerts, fleet, events. Every read
//! goes through [`crate::tenant_db`], so row-level security scopes it to the caller's tenant.

pub mod alerts;
pub mod devices;
pub mod events;
pub mod fleet;
pub mod publish_keys;

use pulse_proto::fleet::Thresholds;
use sqlx::{Postgres, Transaction};

use crate::error::ApiError;

/// `Query<T>` whose rejection is the API's JSON 400.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Path<T>` whose rejection is the API's JSON 400.
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Most items one page may hold.
pub const MAX_LIMIT: i64 = 1000;

/// Checks a `limit` parameter: default when absent, 1..=MAX_LIMIT otherwise.
pub fn limit(raw: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {n}"
        ))),
    }
}

/// Checks an id parameter against the proto id rule.
pub fn id(field: &'static str, raw: &str) -> Result<(), ApiError> {
    pulse_proto::validate_id(raw).map_err(|e| ApiError::BadRequest(format!("invalid {field}: {e}")))
}

/// The status thresholds the poller recorded, so REST and pushes agree.
pub async fn thresholds(tx: &mut Transaction<'static, Postgres>) -> Result<Thresholds, ApiError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT key, value FROM pulse_settings \
          WHERE key IN ('stale_after_seconds', 'offline_after_seconds')",
    )
    .fetch_all(&mut **tx)
    .await
    .unwrap_or_default();
    let mut t = Thresholds::default();
    for (key, value) in rows {
        let Ok(secs) = value.parse::<f64>() else {
            continue;
        };
        let d = std::time::Duration::from_secs_f64(secs.max(0.0));
        match key.as_str() {
            "stale_after_seconds" => t.stale_after = d,
            "offline_after_seconds" => t.offline_after = d,
            _ => {}
        }
    }
    Ok(t)
}
