//! Sessions and tickets.
//!
//! A session is a row of `sessions`: the cookie (httpOnly, SameSite=Strict) holds 32 random
//! bytes, and only their SHA-256 is stored. Every request reads the session together with its
//! user, so logging out, changing a user's role or deleting the user takes effect on the very
//! next request. Nothing signs a session, so holding the gateways' JWT secret does not let
//! anyone make one.
//!
//! The page asks for a short-lived WebSocket ticket instead (see [`crate::ticket`]).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use pulse_proto::TenantId;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::error::ApiError;

/// The session cookie's name over plain HTTP (a local stack).
pub const COOKIE: &str = "pulse_session";
/// Its name when cookies are `Secure` (`PULSE_COOKIE_SECURE`): a `__Host-` cookie, which a
/// browser takes only from this host, over HTTPS, for the whole site. A sibling subdomain can
/// set a plain `pulse_session` for the parent domain (and so plant its own session in a
/// user's browser); it cannot set this one.
pub const SECURE_COOKIE: &str = "__Host-pulse_session";

/// The session cookie's name, as cookies are `Secure` or not.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// A logged-in user, read from the database on every request.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub tenant: TenantId,
    pub role: String,
    /// How many times the user had logged out everywhere when this session was read
    /// (`users.signouts`): its WebSocket tickets carry it, and gateways told of a later
    /// logout everywhere refuse them.
    pub signouts: u64,
    /// The session as its WebSocket tickets name it (claim `sid`): when it ends before its
    /// time (a logout), gateways close the connections of those tickets and refuse them.
    pub id: String,
    /// When the session expires, unix seconds: no ticket of it outlives it (its end then is
    /// not told: an expired session ends nothing).
    pub expires_at: u64,
}

/// The SHA-256 of a cookie's token, if it has the shape of one (64 hex digits).
fn token_hash(token: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(token).ok().filter(|b| b.len() == 32)?;
    Some(Sha256::digest(bytes).to_vec())
}

/// The session's name in its tickets: the first 8 bytes of its token's hash, in hex, as the
/// database names an ended one to the gateways (migration `20261207000006`). It tells nothing
/// of the token.
fn id_of_hash(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(8)])
}

/// [`Session::id`] of the session a cookie's token opens; empty for a token of no shape.
pub fn id_of(token: &str) -> String {
    token_hash(token)
        .map(|h| id_of_hash(&h))
        .unwrap_or_default()
}

/// Starts a session for `user_id` valid `ttl` seconds, unless its password hash is no longer
/// `checked_hash`, the one the login's password was checked against (a new password set
/// meanwhile, or the user deleted): returns the cookie's token, or `None`.
pub async fn start(
    pool: &PgPool,
    user_id: i64,
    checked_hash: &str,
    ttl: u64,
) -> Result<Option<String>, ApiError> {
    let raw: [u8; 32] = rand::random();
    let token = hex::encode(raw);
    let hash = Sha256::digest(raw).to_vec();
    let started = sqlx::query_scalar::<_, bool>("SELECT pulse_start_session($1, $2, $3, $4)")
        .bind(hash)
        .bind(user_id)
        .bind(checked_hash)
        .bind(ttl as f64)
        .fetch_one(pool)
        .await;
    match started {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        // The user deleted while the session was being started.
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // Expired sessions are swept now and then, a few at a time.
    sqlx::query(
        "DELETE FROM sessions WHERE token_hash = ANY(ARRAY( \
           SELECT token_hash FROM sessions WHERE expires_at < now() LIMIT 100))",
    )
    .execute(pool)
    .await?;
    Ok(Some(token))
}

/// The session a cookie's token opens, with its user as the database has it now.
pub async fn find(pool: &PgPool, token: &str) -> Result<Session, ApiError> {
    let hash = token_hash(token).ok_or(ApiError::Unauthorized)?;
    let row: Option<(i64, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT u.user_id, u.email, u.tenant_id::text, u.role, u.signouts, \
                floor(extract(epoch FROM s.expires_at))::bigint \
           FROM sessions s JOIN users u USING (user_id) \
          WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    let (user_id, email, tenant, role, signouts, expires_at) = row.ok_or(ApiError::Unauthorized)?;
    Ok(Session {
        user_id: user_id.to_string(),
        email,
        tenant: TenantId::parse(tenant).map_err(|_| ApiError::Unauthorized)?,
        role,
        signouts: u64::try_from(signouts).unwrap_or_default(),
        id: id_of_hash(&hash),
        expires_at: u64::try_from(expires_at).unwrap_or_default(),
    })
}

/// Ends the session a cookie's token opens, if any.
pub async fn end(pool: &PgPool, token: &str) -> Result<(), ApiError> {
    if let Some(hash) = token_hash(token) {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Ends every session of the user whose session a cookie's token opens, that one included:
/// "log out everywhere", for a user who left a session open elsewhere or fears a cookie was
/// taken. The gateways are told (through the poller) and close the user's WebSockets. Returns
/// how many ended (0 when the token opens no live session).
pub async fn end_all_of_user(pool: &PgPool, token: &str) -> Result<u64, ApiError> {
    let Some(hash) = token_hash(token) else {
        return Ok(0);
    };
    // The function also tells the gateways, which close the user's WebSockets.
    let ended: i64 = sqlx::query_scalar("SELECT pulse_end_sessions_everywhere($1)")
        .bind(hash)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(ended).unwrap_or(0))
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(token: &str, max_age: u64, secure: bool) -> String {
    Cookie::build((cookie_name(secure), token.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .secure(secure)
        .build()
        .to_string()
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's token in a request's headers: the cookie of the name cookies have
/// as they are `Secure` or not, and no other.
pub fn cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(cookie_name(secure))
        .map(|c| c.value().to_owned())
}

/// What opening a session from a request takes: the pool, and whether cookies are `Secure`
/// (which names the cookie).
#[derive(Clone)]
pub struct Sessions {
    pub pool: PgPool,
    pub secure: bool,
}

/// Any state that gives [`Sessions`] opens sessions: the extractor needs nothing else.
impl<S> FromRequestParts<S> for Session
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let sessions = Sessions::from_ref(state);
        let token = cookie(&parts.headers, sessions.secure).ok_or(ApiError::Unauthorized)?;
        find(&sessions.pool, &token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_of_the_right_shape_are_looked_up() {
        assert!(token_hash(&"ab".repeat(32)).is_some());
        assert!(token_hash(&"ab".repeat(31)).is_none());
        assert!(token_hash(&"zz".repeat(32)).is_none());
        assert!(token_hash("eyJhbGciOiJIUzI1NiJ9.e30.x").is_none());
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        // A `__Host-` cookie: Secure, Path=/ and no Domain, or browsers refuse it.
        assert!(c.starts_with("__Host-pulse_session=abc;") && c.contains("Path=/"));
        assert!(!c.contains("Domain"), "{c}");
        assert!(clear_cookie(false).starts_with("pulse_session=;"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
