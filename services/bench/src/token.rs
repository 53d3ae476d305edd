//! Tokens the bench mints for itself: HS256 with the gateways' secret, one per tenant, the
//! claims a dashboard viewer carries.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    email: &'a str,
    tenant_id: &'a str,
    role: &'a str,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct TokenError(#[from] jsonwebtoken::errors::Error);

/// Signs a `customer_viewer` token for `tenant`, valid for `ttl_seconds`.
pub fn mint(secret: &str, tenant: &str, ttl_seconds: u64) -> Result<String, TokenError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        sub: "pulse-bench",
        email: "bench@pulse.invalid",
        tenant_id: tenant,
        role: "customer_viewer",
        exp: now + ttl_seconds,
    };
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
