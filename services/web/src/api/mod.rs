//! The tenant REST API under `/api/v2`: devices, telemetry, alerts, fleet, events. Every read
//! goes through [`pulse_db::roles::begin_as_tenant`], so row-level security scopes it to the caller's tenant.

pub mod alerts;
pub mod devices;
pub mod events;
pub mod fleet;
pub mod publish_keys;

use pulse_db::settings::Applied;
use sqlx::{Postgres, Transaction};

use crate::error::ApiError;

/// Declares `$name<T>`: axum's `$inner<T>` extractor whose rejection is the API's JSON 400.
macro_rules! json_400_extractor {
    ($(#[$doc:meta])* $name:ident wraps $inner:ident) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<S, T> axum::extract::FromRequestParts<S> for $name<T>
        where
            T: serde::de::DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, ApiError> {
                axum::extract::$inner::<T>::from_request_parts(parts, state)
                    .await
                    .map(|axum::extract::$inner(v)| $name(v))
                    .map_err(|e| ApiError::BadRequest(e.body_text()))
            }
        }
    };
}

json_400_extractor!(
    /// `Query<T>` whose rejection is the API's JSON 400.
    ApiQuery wraps Query
);
json_400_extractor!(
    /// `Path<T>` whose rejection is the API's JSON 400.
    ApiPath wraps Path
);

/// The query of a `GET` that takes no parameters (`ApiQuery<NoParams>`): any parameter is
/// refused 400 naming it, as on the routes that take some, not silently ignored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Largest request body the API reads: room for the largest event
/// ([`events::MAX_EVENT_BYTES`]) with its JSON escaping.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// `Json<T>` whose rejection is the API's JSON error: 413 for a body over
/// [`MAX_BODY_BYTES`], 400 for anything else (not JSON, wrong shape, wrong content type).
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(format!(
                    "the body is larger than {MAX_BODY_BYTES} bytes"
                )))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
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

/// One page of `items`, read with `LIMIT limit + 1`: the first `limit` of them, and when there
/// were more, the `cursor` of the last one kept, from which the next page starts.
pub fn page<T, C>(
    mut items: Vec<T>,
    limit: i64,
    cursor: impl FnOnce(&T) -> C,
) -> (Vec<T>, Option<C>) {
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(cursor)
    } else {
        None
    };
    (items, next)
}

/// What the poller recorded it applies (status thresholds, fleet cap), so REST and pushes
/// agree; the defaults when it cannot be read. Read in a savepoint: a failed read would
/// otherwise abort `tx`, and the request's next query with it.
pub async fn applied(tx: &mut Transaction<'static, Postgres>) -> Result<Applied, ApiError> {
    use sqlx::Connection as _;
    let mut savepoint = tx.begin().await?;
    match pulse_db::settings::read(&mut savepoint).await {
        Ok(applied) => {
            savepoint.commit().await?;
            Ok(applied)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read pulse_settings; using the defaults");
            savepoint.rollback().await?;
            Ok(Applied::default())
        }
    }
}
