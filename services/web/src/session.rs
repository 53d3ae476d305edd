//! Sessions and tickets.
//!
//! A session is a row of `sessions`: the cookie (httpOnly, SameSite=Strict) holds 32 random
//! bytes, and only their SHA-256 is stored. Every request reads the session together with its
//! user, so logging out, changing a user's role or deleting the user takes effect on the very
//! next request. Nothing signs a session, so holding the gateways' JWT secret does not let
//! anyone make one.
//!
//! The page asks for a short-lived WebSocket ticket (`/api/v2/ws-ticket`) instead: an HS256
//! token of kind `ws`, signed with `PULSE_JWT_SECRET`, which the gateways verify.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pulse_proto::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::server::AppState;

pub const COOKIE: &str = "pulse_session";

/// What a ticket says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub tenant_id: String,
    pub role: String,
    pub exp: u64,
    pub iat: u64,
    /// Always `ws`: what the token is for. Gateways refuse any other kind.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<String>,
}

/// The `kind` of a WebSocket ticket.
pub const TICKET_KIND: &str = "ws";

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Signs WebSocket tickets.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

/// A logged-in user, read from the database on every request.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub tenant: TenantId,
    pub role: String,
}

impl Tokens {
    pub fn new(secret: &str, issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            issuer,
            audience,
        }
    }

    /// A WebSocket ticket for `session`, valid `ttl` seconds.
    pub fn ticket(&self, session: &Session, ttl: u64) -> anyhow::Result<(String, u64)> {
        let now = unix_now();
        let claims = Claims {
            sub: session.user_id.clone(),
            email: session.email.clone(),
            tenant_id: session.tenant.to_string(),
            role: session.role.clone(),
            exp: now + ttl,
            iat: now,
            kind: TICKET_KIND.into(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }
}

/// The SHA-256 of a cookie's token, if it has the shape of one (64 hex digits).
fn token_hash(token: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(token).ok().filter(|b| b.len() == 32)?;
    Some(Sha256::digest(bytes).to_vec())
}

/// Starts a session for `user_id` valid `ttl` seconds; returns the cookie's token.
pub async fn start(pool: &PgPool, user_id: i64, ttl: u64) -> Result<String, ApiError> {
    let raw: [u8; 32] = rand::random();
    let token = hex::encode(raw);
    let hash = Sha256::digest(raw).to_vec();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(hash)
    .bind(user_id)
    .bind(ttl as f64)
    .execute(pool)
    .await?;
    // Expired sessions are swept now and then, a few at a time.
    sqlx::query(
        "DELETE FROM sessions WHERE token_hash = ANY(ARRAY( \
           SELECT token_hash FROM sessions WHERE expires_at < now() LIMIT 100))",
    )
    .execute(pool)
    .await?;
    Ok(token)
}

/// The session a cookie's token opens, with its user as the database has it now.
pub async fn find(pool: &PgPool, token: &str) -> Result<Session, ApiError> {
    let hash = token_hash(token).ok_or(ApiError::Unauthorized)?;
    let row: Option<(i64, String, String, String)> = sqlx::query_as(
        "SELECT u.user_id, u.email, u.tenant_id::text, u.role \
           FROM sessions s JOIN users u USING (user_id) \
          WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    let (user_id, email, tenant, role) = row.ok_or(ApiError::Unauthorized)?;
    Ok(Session {
        user_id: user_id.to_string(),
        email,
        tenant: TenantId::parse(tenant).map_err(|_| ApiError::Unauthorized)?,
        role,
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

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(token: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's token in a request's headers.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = cookie(&parts.headers).ok_or(ApiError::Unauthorized)?;
        find(&state.pool, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            user_id: "1".into(),
            email: "a@acme.example".into(),
            tenant: TenantId::parse("acme").unwrap(),
            role: "customer_admin".into(),
        }
    }

    #[test]
    fn only_tokens_of_the_right_shape_are_looked_up() {
        assert!(token_hash(&"ab".repeat(32)).is_some());
        assert!(token_hash(&"ab".repeat(31)).is_none());
        assert!(token_hash(&"zz".repeat(32)).is_none());
        assert!(token_hash("eyJhbGciOiJIUzI1NiJ9.e30.x").is_none());
    }

    #[test]
    fn tickets_say_what_they_are_for() {
        let t = Tokens::new("0123456789abcdef0123456789abcdef", None, None);
        let (ticket, exp) = t.ticket(&session(), 60).unwrap();
        assert!(exp > unix_now());
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(
            &ticket,
            &jsonwebtoken::DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.kind, TICKET_KIND);
        assert_eq!(claims.tenant_id, "acme");
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
