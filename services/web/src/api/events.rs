//! `POST /api/v2/events`: publish an application event to `pulse.v1.<tenant>.events.<topic>`.
//!
//! Allowed for a logged-in `customer_admin` (for their own tenant), or for a backend service
//! presenting `Authorization: Bearer <PULSE_PUBLISH_TOKEN>` and naming the tenant. Events go
//! through JetStream (kept in `PULSE_EVENTS` for recovery) with a `seq` from a database
//! sequence, so it increases however many web instances publish.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use pulse_proto::{Event, Subject, TenantId, Timestamp, Topic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::server::AppState;
use crate::session::Tokens;

/// Largest event body accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

#[derive(Deserialize, ToSchema)]
pub struct PublishRequest {
    /// Topic id, e.g. `tickets`.
    pub topic: String,
    /// What happened, e.g. `ticket:update`.
    pub event: String,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub payload: Value,
    /// Required for service publishing; ignored (must match if given) for a session.
    pub tenant_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    pub subject: String,
    pub seq: u64,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who may publish for which tenant.
fn publisher_tenant(
    state: &AppState,
    headers: &HeaderMap,
    body_tenant: Option<&str>,
    tokens: &Tokens,
) -> Result<TenantId, ApiError> {
    if let (Some(given), Some(expected)) = (bearer(headers), &state.config.publish_token)
        && constant_time_eq(given.as_bytes(), expected.as_bytes())
    {
        let raw =
            body_tenant.ok_or_else(|| ApiError::BadRequest("tenant_id is required".into()))?;
        return TenantId::parse(raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid tenant_id: {e}")));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == crate::session::COOKIE)
        .map(|(_, v)| v)
        .ok_or(ApiError::Unauthorized)?;
    let session = tokens.verify_session(cookie)?;
    if session.role != "customer_admin" {
        return Err(ApiError::Forbidden(
            "only customer_admin may publish events",
        ));
    }
    if body_tenant.is_some_and(|t| t != session.tenant.as_str()) {
        return Err(ApiError::Forbidden("cannot publish for another tenant"));
    }
    Ok(session.tenant)
}

#[utoipa::path(post, path = "/api/v2/events", tag = "events", request_body = PublishRequest,
    responses((status = 202, body = Published), (status = 400), (status = 401), (status = 403),
              (status = 503, description = "NATS unavailable")))]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let tenant = publisher_tenant(&state, &headers, body.tenant_id.as_deref(), &state.tokens)?;
    let topic = Topic::parse(body.topic.as_str())
        .map_err(|e| ApiError::BadRequest(format!("invalid topic: {e}")))?;
    if body.event.is_empty() || body.event.len() > 128 {
        return Err(ApiError::BadRequest(
            "event must be 1–128 characters".into(),
        ));
    }
    let seq: i64 = sqlx::query_scalar("SELECT nextval('pulse_event_seq')")
        .fetch_one(&state.pool)
        .await?;
    let event = Event {
        kind: Default::default(),
        tenant_id: tenant.clone(),
        topic: topic.clone(),
        event: body.event,
        seq: seq as u64,
        ts: Timestamp::now(),
        payload: body.payload,
    };
    let bytes = serde_json::to_vec(&event).map_err(|e| ApiError::Internal(e.into()))?;
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(ApiError::BadRequest(format!(
            "event is {} bytes; at most {MAX_EVENT_BYTES}",
            bytes.len()
        )));
    }
    let subject = Subject::Events(tenant, topic).to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(pulse_proto::headers::SEQ, event.seq.to_string().as_str());
    pulse_common::trace_headers::inject_current(&mut headers);
    let ack = state
        .js
        .publish_with_headers(subject.clone(), headers, bytes.into())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tokio::time::timeout(std::time::Duration::from_secs(5), ack)
        .await
        .map_err(|_| ApiError::Unavailable("no acknowledgement from JetStream".into()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            subject,
            seq: event.seq,
        }),
    ))
}
