//! Sessions and tickets: HS256 tokens signed with `PULSE_JWT_SECRET`.
//!
//! The session token lives only in an httpOnly, SameSite=Strict cookie the page cannot read.
//! The page asks for a short-lived WebSocket ticket (`/api/v2/ws-ticket`) instead, which the
//! gateways verify with the same secret.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pulse_proto::TenantId;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::server::AppState;

pub const COOKIE: &str = "pulse_session";

/// What a token says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub tenant_id: String,
    pub role: String,
    pub exp: u64,
    pub iat: u64,
    /// `session` or `ws`: a ticket is never accepted as a session.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<String>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Signs and verifies Pulse tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

/// A logged-in user, from the session cookie.
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
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            issuer,
            audience,
        }
    }

    /// A token of `kind` for `session`, valid `ttl` seconds.
    pub fn issue(&self, session: &Session, kind: &str, ttl: u64) -> anyhow::Result<(String, u64)> {
        let now = unix_now();
        let claims = Claims {
            sub: session.user_id.clone(),
            email: session.email.clone(),
            tenant_id: session.tenant.to_string(),
            role: session.role.clone(),
            exp: now + ttl,
            iat: now,
            kind: kind.into(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }

    /// Verifies a session token.
    pub fn verify_session(&self, token: &str) -> Result<Session, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| ApiError::Unauthorized)?
            .claims;
        if claims.kind != "session" {
            return Err(ApiError::Unauthorized);
        }
        let tenant = TenantId::parse(claims.tenant_id).map_err(|_| ApiError::Unauthorized)?;
        Ok(Session {
            user_id: claims.sub,
            email: claims.email,
            tenant,
            role: claims.role,
        })
    }
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

fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = cookie_value(parts, COOKIE).ok_or(ApiError::Unauthorized)?;
        state.tokens.verify_session(token)
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
    fn sessions_round_trip_and_tickets_are_not_sessions() {
        let t = Tokens::new("0123456789abcdef0123456789abcdef", None, None);
        let (token, exp) = t.issue(&session(), "session", 60).unwrap();
        assert!(exp > unix_now());
        assert_eq!(t.verify_session(&token).unwrap().tenant.as_str(), "acme");
        let (ticket, _) = t.issue(&session(), "ws", 60).unwrap();
        assert!(t.verify_session(&ticket).is_err());
        let other = Tokens::new("another-secret-another-secret-xx", None, None);
        assert!(other.verify_session(&token).is_err());
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
