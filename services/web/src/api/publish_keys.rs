//! Event publishing credentials per tenant: `POST /api/v2/publish-keys` makes one (shown
//! once), `GET` lists them, `DELETE /api/v2/publish-keys/{key_id}` revokes one. A
//! `customer_admin` manages its own tenant's keys. A backend publishes with
//! `Authorization: Bearer <key>`, for the key's tenant only; only the key's SHA-256 is stored.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use pulse_proto::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::api::{ApiJson, ApiPath, ApiQuery, NoParams};
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::begin_as_tenant;

/// Every key starts with this, so a leaked one is recognisable (and scannable).
pub const KEY_PREFIX: &str = "pulse_pk_";

/// Keys a tenant may hold at once: plenty for one per backend, and a bound on what a stolen
/// admin session can pile up.
pub const MAX_KEYS_PER_TENANT: i64 = 100;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for, e.g. `ticketing-backend`; 1 to 128 bytes.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub key_id: i64,
    pub name: String,
    /// The key itself: shown this once, never again.
    pub key: String,
    #[schema(value_type = String)]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct KeyInfo {
    pub key_id: i64,
    pub name: String,
    #[schema(value_type = String)]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[schema(value_type = Option<String>)]
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyInfo>,
}

/// The session of a `customer_admin`, who manages the tenant's keys. An extractor, so that it
/// is checked before the path and the body: anyone else gets 403 whatever they send, as a
/// publish without credentials gets 401.
pub struct KeyAdmin(Session);

impl FromRequestParts<AppState> for KeyAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let session = Session::from_request_parts(parts, state).await?;
        if session.role != "customer_admin" {
            return Err(ApiError::Forbidden(
                "only customer_admin may manage publish keys",
            ));
        }
        Ok(KeyAdmin(session))
    }
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The tenant a publish key belongs to, if it is one that exists. Its `last_used_at` is
/// written at most once a minute: a write on every request would queue a flooding backend's
/// requests (even those refused by the rate limit) on the key's row, each holding a pool
/// connection meanwhile.
pub async fn tenant_of(state: &AppState, key: &str) -> Result<Option<TenantId>, ApiError> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let tenant: Option<String> = sqlx::query_scalar(
        "WITH found AS (SELECT key_id, tenant_id, last_used_at FROM publish_keys \
                         WHERE key_hash = $1), \
              touched AS (UPDATE publish_keys SET last_used_at = now() FROM found \
                           WHERE publish_keys.key_id = found.key_id \
                             AND (found.last_used_at IS NULL \
                                  OR found.last_used_at < now() - interval '1 minute')) \
         SELECT tenant_id::text FROM found",
    )
    .bind(hash(key))
    .fetch_optional(&state.pool)
    .await?;
    Ok(tenant.and_then(|t| TenantId::parse(t).ok()))
}

#[utoipa::path(post, path = "/api/v2/publish-keys", tag = "events", request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 401), (status = 403),
              (status = 409, description = "the tenant holds the most keys allowed (100)"),
              (status = 413, description = "the body is larger than 128 KiB")))]
pub async fn create(
    State(state): State<AppState>,
    KeyAdmin(session): KeyAdmin,
    _: ApiQuery<NoParams>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::BadRequest("name must be 1–128 bytes".into()));
    }
    let raw: [u8; 32] = rand::random();
    let key = format!("{KEY_PREFIX}{}", hex::encode(raw));
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    // Counted under a lock of the tenant's keys, taken first (the count's statement then sees
    // every creation that held it before), so concurrent creations cannot pass the cap
    // together; released with the transaction.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pulse_publish_keys'), hashtext($1))")
        .bind(session.tenant.as_str())
        .execute(&mut *tx)
        .await?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM publish_keys WHERE tenant_id = $1")
        .bind(session.tenant.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if held >= MAX_KEYS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "a tenant holds at most {MAX_KEYS_PER_TENANT} publish keys; revoke one first"
        )));
    }
    let (key_id, created_at): (i64, OffsetDateTime) = sqlx::query_as(
        "INSERT INTO publish_keys (tenant_id, key_hash, name) VALUES ($1, $2, $3) \
         RETURNING key_id, created_at",
    )
    .bind(session.tenant.as_str())
    .bind(hash(&key))
    .bind(&name)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(tenant = %session.tenant, key_id, "publish key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key_id,
            name,
            key,
            created_at,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v2/publish-keys", tag = "events",
    responses((status = 200, body = KeyList),
              (status = 400, description = "A query parameter: the route takes none"),
              (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    KeyAdmin(session): KeyAdmin,
    _: ApiQuery<NoParams>,
) -> Result<Json<KeyList>, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let items = sqlx::query_as(
        "SELECT key_id, name, created_at, last_used_at FROM publish_keys \
          WHERE tenant_id = $1 ORDER BY key_id",
    )
    .bind(session.tenant.as_str())
    .fetch_all(&mut *tx)
    .await?;
    Ok(Json(KeyList { items }))
}

#[utoipa::path(delete, path = "/api/v2/publish-keys/{key_id}", tag = "events",
    params(("key_id" = i64, Path, description = "The key to revoke")),
    responses((status = 204, description = "Revoked: the key publishes nothing from now on"),
              (status = 400, description = "a `key_id` that is not a whole number, or a query parameter"),
              (status = 401), (status = 403), (status = 404)))]
pub async fn revoke(
    State(state): State<AppState>,
    KeyAdmin(session): KeyAdmin,
    ApiPath(key_id): ApiPath<i64>,
    _: ApiQuery<NoParams>,
) -> Result<StatusCode, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, &session.tenant).await?;
    let gone = sqlx::query("DELETE FROM publish_keys WHERE key_id = $1 AND tenant_id = $2")
        .bind(key_id)
        .bind(session.tenant.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if gone == 0 {
        return Err(ApiError::NotFound("publish key"));
    }
    tracing::info!(tenant = %session.tenant, key_id, "publish key revoked");
    Ok(StatusCode::NO_CONTENT)
}
