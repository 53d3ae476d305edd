//! The tenant REST API under `/api/v2`: devices, telemetry, alerts, fleet, events. Every read
//! goes through [`pulse_db::roles::begin_as_tenant`], so row-level security scopes it to the caller's tenant.

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

/// The status thresholds the poller recorded, so REST and pushes agree; the defaults when they
/// cannot be read.
pub async fn thresholds(tx: &mut Transaction<'static, Postgres>) -> Result<Thresholds, ApiError> {
    Ok(pulse_db::settings::read_thresholds(tx)
        .await
        .unwrap_or_default())
}
