//! Logging in and out, who am I, and WebSocket tickets.

use std::net::SocketAddr;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use pulse_proto::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiJson, ApiQuery, NoParams};
use crate::error::ApiError;
use crate::login_addresses;
use crate::session::{self, Session};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// The logged-in user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub email: String,
    pub tenant_id: String,
    pub role: String,
}

/// A short-lived token for the gateways, and where they are.
#[derive(Serialize, ToSchema)]
pub struct Ticket {
    pub token: String,
    /// Unix seconds, by the server's clock.
    pub expires_at: u64,
    /// Seconds the token is valid from now: lets a client time its renewal by its own clock,
    /// whatever the difference between its clock and the server's.
    pub expires_in: u64,
    /// Gateway WebSocket URLs; pick one at random per connection attempt.
    pub gateways: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: i64,
    email: String,
    password_hash: String,
    tenant_id: String,
    role: String,
    signouts: i64,
}

/// A hash to verify against when the email is unknown, so a miss costs as much as a hit and
/// timing does not reveal which emails exist. Made once, when the service starts.
pub(crate) fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::PasswordHasher as _;
        argon2::password_hash::SaltString::encode_b64(b"pulse-dummy-salt")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"not-a-password", &salt)
                    .map(|h| h.to_string())
                    .ok()
            })
            .unwrap_or_default()
    })
    .clone()
}

#[utoipa::path(post, path = "/api/v2/login", tag = "account", request_body = LoginRequest,
    security(()),
    responses((status = 200, body = Me, description = "Logged in; the session cookie is set"),
              (status = 400, description = "A missing, over-long or unstorable email or password, a field or query parameter the route does not know, or a body that is not JSON"),
              (status = 401, description = "Wrong email or password"),
              (status = 413, description = "The body is larger than 128 KiB"),
              (status = 429, description = "Too many attempts; see Retry-After"),
              (status = 503, description = "Too many logins at once, or the user's row held by a change of it for 5 s; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    _: ApiQuery<NoParams>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    if email.is_empty() || body.password.is_empty() {
        return Err(ApiError::BadRequest(
            "email and password are required".into(),
        ));
    }
    if email.len() > 320 || body.password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "an email is at most 320 bytes and a password at most 1024".into(),
        ));
    }
    let client = state.logins.client(peer.ip(), &headers);
    // Argon2 is deliberately slow and memory-hungry: a bounded number at once. The slot is
    // taken before the attempt is counted, so a login turned away as busy (503, retry in a
    // second) costs the user none of their attempts.
    let slot = state.logins.hashing_slot().await?;
    state.logins.attempt(&state.pool, &email, client).await?;
    let user: Option<UserRow> = sqlx::query_as(
        "SELECT user_id, email, password_hash, tenant_id::text, role, signouts FROM users WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.pool)
    .await?;
    let password = body.password;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(dummy_hash);
    // Off the async workers.
    let verified = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // A stored value that is no hash (an account locked by writing `!` there) costs a
        // verification all the same, against the dummy: timing does not tell it exists.
        let dummy = dummy_hash();
        let (parsed, usable) = match PasswordHash::new(&hash) {
            Ok(parsed) => (parsed, true),
            Err(_) => match PasswordHash::new(&dummy) {
                Ok(parsed) => (parsed, false),
                Err(_) => return false,
            },
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        usable && matches
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let user = match user {
        Some(u) if verified => u,
        _ => {
            state.metrics.login_failures.inc();
            return Err(ApiError::Unauthorized);
        }
    };
    let ttl = state.config.session_ttl.as_secs();
    let Some(token) = session::start(&state.pool, user.user_id, &user.password_hash, ttl).await?
    else {
        // A new password (or the user's deletion) came while this one was being checked.
        state.metrics.login_failures.inc();
        return Err(ApiError::Unauthorized);
    };
    // The session the browser's cookie named until now (another user's, on a shared computer,
    // or this one's again) is ended: the cookie is replaced, and the old one would otherwise
    // stay valid on the server for the rest of its life, for whoever kept a copy.
    if let Some(replaced) = session::cookie(&headers, state.config.cookie_secure)
        && let Err(e) = session::end(&state.pool, &replaced).await
    {
        tracing::warn!(error = %e, "cannot end the session the new login replaces");
    }
    // Remembered only for a login that got its session.
    state.logins.remember(&email, client);
    if let Err(e) = login_addresses::remember(&state.pool, user.user_id, client).await {
        // The login stands; only the exemption on other instances waits for the next one.
        tracing::warn!(error = %e, "cannot record the login's address");
    }
    let tenant = TenantId::parse(user.tenant_id).map_err(|e| ApiError::Internal(e.into()))?;
    let session = Session {
        user_id: user.user_id.to_string(),
        email: user.email,
        tenant,
        role: user.role,
        signouts: u64::try_from(user.signouts).unwrap_or_default(),
        id: session::id_of(&token),
        expires_at: crate::ticket::unix_now() + ttl,
    };
    let cookie = session::set_cookie(&token, ttl, state.config.cookie_secure);
    tracing::info!(tenant = %session.tenant, email = %session.email, "login");
    Ok((
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        Json(me(&session)),
    )
        .into_response())
}

/// Unknown parameters are refused, as on every route.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogoutParams {
    /// `true`: end every session of the user, on every browser and device, not only this
    /// one; the gateways close its WebSockets within moments (4001). Answered 401, nothing
    /// ended, when this session is no longer live.
    pub everywhere: Option<bool>,
}

#[utoipa::path(post, path = "/api/v2/logout", tag = "account", security((), ("session" = [])),
    params(LogoutParams),
    responses((status = 204, description = "Logged out: the session the request's cookie names (with `everywhere=true`, every session of its user) is ended on the server and the cookie cleared; without the cookie, nothing changes"),
              (status = 400, description = "An unknown parameter, or `everywhere` not `true` or `false`"),
              (status = 401, description = "`everywhere=true` without a live session (no cookie, or an expired or ended one): nothing ended"),
              (status = 503, description = "`everywhere=true` while a change of the user held its row for 5 s: nothing ended; see Retry-After")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<LogoutParams>,
) -> Result<Response, ApiError> {
    // Without the cookie there is nothing to end, nor to clear: a page of another site can
    // make the browser post here (a top-level form sends no SameSite=Strict cookie), and its
    // answer must not sign the user out of this one.
    let Some(token) = session::cookie(&headers, state.config.cookie_secure) else {
        // "Logged out everywhere" said with no session to end would leave the user trusting
        // that sessions elsewhere are gone: the browser drops the cookie when it expires, so
        // this is how an ended session usually looks.
        if p.everywhere == Some(true) {
            return Err(ApiError::Unauthorized);
        }
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    };
    if p.everywhere == Some(true) {
        // From an expired or ended session nothing can be ended: saying "logged out
        // everywhere" would leave the user trusting that sessions elsewhere are gone.
        let ended = session::end_all_of_user(&state.pool, &token).await?;
        if ended == 0 {
            return Err(ApiError::Unauthorized);
        }
        tracing::info!(sessions = ended, "logout everywhere");
    } else {
        session::end(&state.pool, &token).await?;
    }
    Ok((
        axum::http::StatusCode::NO_CONTENT,
        AppendHeaders([(
            header::SET_COOKIE,
            session::clear_cookie(state.config.cookie_secure),
        )]),
    )
        .into_response())
}

fn me(s: &Session) -> Me {
    Me {
        email: s.email.clone(),
        tenant_id: s.tenant.to_string(),
        role: s.role.clone(),
    }
}

#[utoipa::path(get, path = "/api/v2/me", tag = "account",
    responses((status = 200, body = Me),
              (status = 400, description = "A query parameter: the route takes none"),
              (status = 401, description = "Not logged in")))]
pub async fn whoami(session: Session, _: ApiQuery<NoParams>) -> Json<Me> {
    Json(me(&session))
}

#[utoipa::path(get, path = "/api/v2/ws-ticket", tag = "account",
    responses((status = 200, body = Ticket),
              (status = 400, description = "A query parameter: the route takes none"),
              (status = 401, description = "Not logged in")))]
pub async fn ws_ticket(
    State(state): State<AppState>,
    session: Session,
    _: ApiQuery<NoParams>,
) -> Result<Response, ApiError> {
    let (token, expires_at, expires_in) = state
        .tokens
        .ticket(&session, state.config.ticket_ttl.as_secs())?;
    let ticket = Ticket {
        token,
        // Shorter than the lifetime when the session ends sooner.
        expires_in,
        expires_at,
        gateways: state.config.gateway_urls.clone(),
    };
    Ok((
        AppendHeaders([(header::CACHE_CONTROL, "no-store")]),
        Json(ticket),
    )
        .into_response())
}
