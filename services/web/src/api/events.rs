//! `POST /api/v2/events`: emit an application event; `GET /api/v2/events`: read a topic's
//! retained events.
//!
//! Publishing writes the event to the database outbox through `pulse_emit_event`, the same
//! function triggers and other writers use; the active poller relays it to
//! `pulse.v1.<tenant>.events.<topic>`. So the web service needs no NATS, an event accepted
//! here survives a NATS outage, and `seq` increases by exactly 1 per topic whichever instance
//! or writer emitted it.
//!
//! Allowed for a logged-in `customer_admin` (for their own tenant, with the role the database
//! holds now), for a backend presenting one of its tenant's publish keys
//! (`Authorization: Bearer pulse_pk_…`, see [`crate::api::publish_keys`]), or, the older way,
//! for a backend presenting `PULSE_PUBLISH_TOKEN` and naming the tenant. Each tenant
//! may publish `PULSE_EVENTS_PER_SECOND` (bursts of `PULSE_EVENTS_BURST`); more get 429 with
//! `Retry-After`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use futures::TryStreamExt as _;
use pulse_proto::{Event, StoredEvent, Subject, TenantId, Timestamp, Topic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiJson, ApiQuery, MAX_BODY_BYTES, NoParams, limit};
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;
use pulse_db::roles::{begin_as_tenant, begin_reading_as_tenant};

/// Largest event message (the JSON pushed to clients), in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// How deep a published payload's arrays and objects may nest.
pub const MAX_PAYLOAD_DEPTH: usize = 100;
// A body must have room for the largest event with its JSON escaping, so that an event too
// large is told so by the size check below, not by the body limit.
const _: () = assert!(MAX_BODY_BYTES >= 2 * MAX_EVENT_BYTES);
/// Longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Most bytes of events (payloads and names, as stored) one page of `GET /api/v2/events`
/// holds, past its first event: a thousand events of 64 KiB would hold 64 MiB per request.
/// The caller reads on with `after`.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// Most event topics a tenant may have (the schema's `event_topics_per_tenant`).
pub const MAX_TOPICS_PER_TENANT: usize = 10_000;
/// The built-in topic of alert changes, emitted by the database's trigger only.
pub const ACTIVITY_TOPIC: &str = "activity";
/// The request header that makes a publish idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Unknown fields are refused: a misspelt `payload` would otherwise store the event with a
/// `null` one and answer 202.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Topic id, e.g. `tickets`.
    #[schema(value_type = String)]
    pub topic: Topic,
    /// What happened, e.g. `ticket:update`; 1 to 128 bytes.
    pub event: String,
    /// Any JSON value (`null` when left out), pushed to subscribers as PostgreSQL stores it:
    /// kept as sent, not decoded on the way, so a number keeps every digit.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub payload: Option<Box<RawValue>>,
    /// Required for service publishing; ignored (must match if given) for a session.
    #[schema(value_type = Option<String>)]
    pub tenant_id: Option<TenantId>,
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    pub subject: String,
    /// The event's `seq` within its topic.
    pub seq: u64,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Who publishes, from the request's credentials alone: known before the body is read, so a
/// caller without them gets 401 whatever it sent.
pub enum Publisher {
    /// A tenant's publish key: it publishes for that tenant and no other.
    Key(TenantId),
    /// A backend holding the all-tenant `PULSE_PUBLISH_TOKEN`: the body names the tenant.
    Service,
    /// A `customer_admin` session: it publishes for its own tenant.
    Admin(TenantId),
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        if let Some(given) = bearer(headers)
            && given.starts_with(crate::api::publish_keys::KEY_PREFIX)
        {
            return crate::api::publish_keys::tenant_of(state, given)
                .await?
                .map(Publisher::Key)
                .ok_or(ApiError::Unauthorized);
        }
        if let (Some(given), Some(expected)) = (bearer(headers), &state.config.publish_token)
            && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        {
            return Ok(Publisher::Service);
        }
        let token = crate::session::cookie(headers, state.config.cookie_secure)
            .ok_or(ApiError::Unauthorized)?;
        let session = crate::session::find(&state.pool, &token).await?;
        if session.role != "customer_admin" {
            return Err(ApiError::Forbidden(
                "only customer_admin may publish events",
            ));
        }
        Ok(Publisher::Admin(session.tenant))
    }
}

impl Publisher {
    /// The tenant published for: the body's `tenant_id`, where given, must be the one the
    /// credentials publish for.
    fn tenant(self, named: Option<TenantId>) -> Result<TenantId, ApiError> {
        let (own, refusal) = match self {
            Publisher::Service => {
                return named.ok_or_else(|| ApiError::BadRequest("tenant_id is required".into()));
            }
            Publisher::Key(own) => (own, "this key publishes for another tenant"),
            Publisher::Admin(own) => (own, "cannot publish for another tenant"),
        };
        match named {
            Some(other) if other != own => Err(ApiError::Forbidden(refusal)),
            _ => Ok(own),
        }
    }
}

/// The `Idempotency-Key` header: 1 to 128 bytes of visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
        ))
    };
    let key = raw.to_str().map_err(|_| bad())?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

#[utoipa::path(post, path = "/api/v2/events", tag = "events", request_body = PublishRequest,
    security(("session" = []), ("publish_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Retry-safe publishing: the same key (per tenant, while the event is retained) returns the same seq and emits nothing new")),
    responses((status = 202, body = Published), (status = 400), (status = 401), (status = 403),
              (status = 409, description = "the Idempotency-Key was used for another topic, event or payload"),
              (status = 413, description = "the event is larger than 64 KiB"),
              (status = 429, description = "the tenant publishes faster than its limit; see Retry-After"),
              (status = 503, description = "database unavailable")))]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    publisher: Publisher,
    _: ApiQuery<NoParams>,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let tenant = publisher.tenant(body.tenant_id.clone())?;
    let topic = body.topic;
    if topic.as_str() == ACTIVITY_TOPIC {
        return Err(ApiError::Forbidden(
            "topic `activity` is written by the database alone (alert changes)",
        ));
    }
    if body.event.is_empty() || body.event.len() > 128 {
        return Err(ApiError::BadRequest("event must be 1–128 bytes".into()));
    }
    let key = idempotency_key(&headers)?;
    // The message as clients will get it with a `null` payload and the largest seq it could
    // have: what the payload may add to it is what the limit leaves.
    let envelope = Event {
        kind: Default::default(),
        tenant_id: tenant.clone(),
        topic: topic.clone(),
        event: body.event.clone(),
        seq: u64::MAX,
        ts: Timestamp::now(),
        payload: Value::Null,
    };
    let envelope = serde_json::to_vec(&envelope)
        .map_err(|e| ApiError::Internal(e.into()))?
        .len()
        - "null".len();
    let payload = body.payload.as_deref().map_or("null", RawValue::get);
    // PostgreSQL writes a number out in full: `1e131000`, eight bytes as sent, is 131,001
    // digits as stored. What the payload could grow to is bounded before the database is asked
    // to write it out (a body of such numbers would have it build a gigabyte).
    let Measured {
        stored_bound: bound,
        depth,
    } = measure(payload);
    // Deeper, PostgreSQL may refuse it (its stack depth), or store what consumers cannot read
    // back (serde_json, and so `pulse_proto::Event`, stops at 128 levels, the page and event
    // around the payload included).
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "the payload nests {depth} levels deep; at most {MAX_PAYLOAD_DEPTH}"
        )));
    }
    if bound > 2 * MAX_EVENT_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the payload could be {bound} bytes as stored (numbers are written out in full); \
             at most {MAX_EVENT_BYTES}"
        )));
    }
    let subject = Subject::Events(tenant.clone(), topic.clone()).to_string();

    // The rate first: past the credential lookup, a tenant over it on this instance costs the
    // database nothing, not even the lookup of an idempotency key (a retry refused here gets
    // its key's answer once it comes in time); within it, one statement counts it with every
    // instance.
    state.event_limiter.check(&state.pool, &tenant).await?;
    if let Some(key) = &key
        && let Some(prior) = prior_event(&state, &tenant, key, payload).await?
    {
        return replayed(prior, &tenant, &topic, &body.event);
    }
    // Written as the tenant: row-level security checks that the event is the tenant's own.
    let mut tx = begin_as_tenant(&state.pool, &tenant).await?;
    // The payload as the database stores it, and so as it is relayed (`1e300` as 301 digits),
    // is what counts; it comes back only when it may not fit, to be measured as pushed.
    let (seq, long): (i64, Option<String>) = sqlx::query_as(
        "SELECT pulse_emit_event($1, $2, $3, given.payload, $5), \
                CASE WHEN octet_length(given.payload::text) > $6 THEN given.payload::text END \
           FROM (SELECT $4::jsonb AS payload) AS given",
    )
    .bind(tenant.as_str())
    .bind(topic.as_str())
    .bind(&body.event)
    .bind(payload)
    .bind(key.as_deref())
    .bind(MAX_EVENT_BYTES.saturating_sub(envelope) as i64)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| refused(e, &tenant))?;
    if let Some(stored) = long {
        let pushed = pulse_proto::message::stored_payload(stored)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored payload: {e}")))?;
        let size = envelope + pushed.get().len();
        if size > MAX_EVENT_BYTES {
            // Rolled back as the transaction drops: nothing is stored.
            return Err(ApiError::PayloadTooLarge(format!(
                "the event is {size} bytes as pushed; at most {MAX_EVENT_BYTES}"
            )));
        }
    }
    tx.commit().await?;
    // With a key, `pulse_emit_event` returns the seq of whichever event holds it: a concurrent
    // publish with the same key that committed first may have stored another topic or event.
    // Answer as for any reused key (the same seq, or 409), never with another event's seq.
    if let Some(key) = &key
        && let Some(holder) = prior_event(&state, &tenant, key, payload).await?
    {
        return replayed(holder, &tenant, &topic, &body.event);
    }
    tracing::debug!(%subject, seq, "event stored");
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            subject,
            seq: seq as u64,
        }),
    ))
}

/// What a payload is, read before the database sees it.
#[derive(Debug, PartialEq, Eq)]
struct Measured {
    /// An upper bound of the size of the JSON as PostgreSQL writes it out: its strings and
    /// tokens (whitespace between tokens is not kept), plus the space `jsonb` writes after each
    /// `,` and `:`, plus for each number the digits its exponent adds (`1e300` becomes 301
    /// digits, `1e-300` a 302 character fraction). Strings are passed over whole, escapes
    /// included (an escape is never longer as stored).
    stored_bound: usize,
    /// How deep its arrays and objects nest (`[[1]]` is 2).
    depth: usize,
}

/// Measures the JSON `json` in one pass (see [`Measured`]).
fn measure(json: &str) -> Measured {
    let bytes = json.as_bytes();
    let mut bound = 0usize;
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            bound = bound.saturating_add(1);
            match b {
                b'\\' => {
                    bound = bound.saturating_add(1);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    bound = bound.saturating_add(1);
                }
                b',' | b':' => bound = bound.saturating_add(2),
                b'[' | b'{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                    bound = bound.saturating_add(1);
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    bound = bound.saturating_add(1);
                }
                b'e' | b'E' => {
                    // A number's exponent: its digits follow, after an optional sign (the `e`
                    // ending `true` and `false` has none, and adds its 2 for nothing).
                    let digits = bytes[i + 1..]
                        .iter()
                        .skip_while(|c| matches!(c, b'+' | b'-'))
                        .take_while(|c| c.is_ascii_digit());
                    let exponent = digits.fold(0usize, |n, d| {
                        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
                    });
                    bound = bound.saturating_add(exponent).saturating_add(3);
                }
                _ => bound = bound.saturating_add(1),
            }
        }
        i += 1;
    }
    Measured {
        stored_bound: bound,
        depth: deepest,
    }
}

/// What PostgreSQL refuses of an event: a payload over the limit as it stores it (`jsonb`
/// writes numbers out in full and a space after each `,` and `:`, so a payload under the limit
/// as sent may exceed it as stored), a tenant that does not exist, or a new topic past the
/// tenant's cap.
fn refused(e: sqlx::Error, tenant: &TenantId) -> ApiError {
    if let sqlx::Error::Database(db) = &e {
        if db.constraint() == Some("events_payload_check") {
            return ApiError::PayloadTooLarge(format!(
                "the payload is larger than {MAX_EVENT_BYTES} bytes as stored"
            ));
        }
        if db.is_foreign_key_violation() {
            return ApiError::BadRequest(format!("tenant_id {tenant} names no tenant"));
        }
        if db.constraint() == Some("event_topics_per_tenant") {
            return ApiError::Conflict(format!(
                "tenant {tenant} already has {MAX_TOPICS_PER_TENANT} event topics; publish to \
                 one of them"
            ));
        }
    }
    e.into()
}

/// The event an idempotency key already created.
#[derive(sqlx::FromRow)]
struct Prior {
    topic: String,
    event: String,
    seq: i64,
    /// Whether it holds the payload asked for now (equal as `jsonb`: key order, whitespace and
    /// how a number is written do not count).
    same_payload: bool,
}

/// The event `key` already created, compared with `payload`, the one asked for now.
async fn prior_event(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
    payload: &str,
) -> Result<Option<Prior>, ApiError> {
    let mut tx = begin_as_tenant(&state.pool, tenant).await?;
    Ok(sqlx::query_as(
        "SELECT topic::text, event, seq, payload = $3::jsonb AS same_payload \
           FROM events WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(payload)
    .fetch_optional(&mut *tx)
    .await?)
}

/// The answer to a publish whose key was used before: the same seq, nothing new.
fn replayed(
    prior: Prior,
    tenant: &TenantId,
    topic: &Topic,
    event: &str,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    if prior.topic != topic.as_str() || prior.event != event {
        return Err(ApiError::Conflict(format!(
            "this Idempotency-Key was used for event {:?} on topic {:?}",
            prior.event, prior.topic
        )));
    }
    // A retry sends what it sent before: another payload under the key would be lost unseen.
    if !prior.same_payload {
        return Err(ApiError::Conflict(format!(
            "this Idempotency-Key was used for event {:?} (seq {}) with another payload",
            prior.event, prior.seq
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            subject: Subject::Events(tenant.clone(), topic.clone()).to_string(),
            seq: prior.seq as u64,
        }),
    ))
}

/// Unknown parameters are refused: a misspelt filter or cursor would silently list everything.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// The topic.
    #[param(value_type = String)]
    pub topic: Topic,
    /// Only events with a higher seq, oldest first. Without it: the newest `limit` events. A
    /// page holds at most 1 MiB of events, so it may hold fewer than `limit`.
    pub after: Option<i64>,
    /// At most this many events, 1–1000 (default 100).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub topic: String,
    /// Ascending seq, each exactly as pushed on the `events` channel.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
    /// The topic's newest seq (0 when it has none): a client that has it has everything.
    pub last_seq: u64,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    event: String,
    /// As stored, not decoded: see [`StoredEvent`].
    payload: String,
    created_at: OffsetDateTime,
}

#[utoipa::path(get, path = "/api/v2/events", tag = "events", params(EventParams),
    responses((status = 200, body = EventPage), (status = 400), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(p): ApiQuery<EventParams>,
) -> Result<Json<EventPage>, ApiError> {
    let topic = p.topic;
    let limit = limit(p.limit, 100)?;
    if p.after.is_some_and(|a| a < 0) {
        return Err(ApiError::BadRequest("after must be 0 or more".into()));
    }
    // One snapshot for the page and `last_seq`: read apart, an event committed between the two
    // is either listed above `last_seq` or counted in it without being listed, and a client
    // that takes `last_seq` as its position then never gets it.
    let mut tx = begin_reading_as_tenant(&state.pool, &session.tenant).await?;
    // With `after`, the oldest first; without, the newest first: a page cut short by its
    // byte budget keeps the events the caller reads first.
    let query = match p.after {
        Some(after) => sqlx::query_as::<_, Row>(
            "SELECT seq, event, payload::text, created_at FROM events \
              WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(topic.as_str())
        .bind(after)
        .bind(limit),
        None => sqlx::query_as(
            "SELECT seq, event, payload::text, created_at FROM events \
              WHERE topic = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(topic.as_str())
        .bind(limit),
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut bytes = 0;
    let mut fetched = query.fetch(&mut *tx);
    while let Some(row) = fetched.try_next().await? {
        bytes += row.payload.len() + row.event.len();
        if !rows.is_empty() && bytes > MAX_PAGE_BYTES {
            break;
        }
        rows.push(row);
    }
    drop(fetched);
    let last_seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM event_topics WHERE topic = $1")
            .bind(topic.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    rows.sort_by_key(|r| r.seq);
    let events = rows
        .into_iter()
        .map(|r| {
            // PostgreSQL writes `jsonb` out as valid JSON: this cannot fail, short of a bug.
            let payload = pulse_proto::message::stored_payload(r.payload)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored payload: {e}")))?;
            Ok(StoredEvent {
                kind: Default::default(),
                tenant_id: session.tenant.clone(),
                topic: topic.clone(),
                event: r.event,
                seq: r.seq as u64,
                ts: Timestamp(r.created_at),
                payload,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(EventPage {
        topic: topic.to_string(),
        events,
        last_seq: last_seq.unwrap_or(0) as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_size_bound_counts_the_digits_an_exponent_writes_out() {
        let stored_size_bound = |json: &str| measure(json).stored_bound;
        let stored = |json: &str| json.len() + json.matches([',', ':']).count();
        // Whitespace between tokens is not kept: a pretty-printed payload is bounded by its
        // compact form.
        let pretty = "{\n    \"a\": [\n        1,\n        2\n    ]\n}";
        assert_eq!(stored_size_bound(pretty), stored(r#"{"a":[1,2]}"#));
        // As PostgreSQL writes them: `1000…0` (301), `0.000…01` (302).
        for (json, written) in [("1e300", 301), ("1e-300", 302), ("[1.5E+2]", 5)] {
            assert!(stored_size_bound(json) >= written, "{json}");
        }
        assert!(stored_size_bound("1E+131000") > 131_000);
        assert_eq!(stored_size_bound("1e99999999999999999999999"), usize::MAX);
        // In strings, an `e` and digits are text, escaped quotes included.
        let text = r#"{"k":"1e300 \" 1e300"}"#;
        assert_eq!(stored_size_bound(text), stored(text));
    }

    #[test]
    fn the_depth_is_of_arrays_and_objects_not_of_brackets_in_strings() {
        let depth = |json: &str| measure(json).depth;
        assert_eq!(depth("1"), 0);
        assert_eq!(depth(r#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        assert_eq!(depth(r#"["[[[[", "\"[["]"#), 1);
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(depth(&deep), 20_000);
    }
}
