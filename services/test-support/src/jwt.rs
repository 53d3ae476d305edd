//! Tokens for tests: one HS256 secret that every test gateway, web service and bench shares,
//! and tokens signed with it the way the web service signs its tickets.

use serde_json::{Value, json};

/// The secret the test configurations share (as long as the services require).
pub const SECRET: &str = "test-secret-test-secret-test-secret!";

/// Seconds since the Unix epoch, as JWT `exp`/`nbf` count them.
pub fn now() -> u64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(e) => panic!("the clock is before 1970: {e}"),
    }
}

/// `claims` signed with [`SECRET`] (HS256).
pub fn sign(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    match jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) {
        Ok(token) => token,
        Err(e) => panic!("cannot sign {claims}: {e}"),
    }
}

/// A valid viewer token for `tenant` expiring in `ttl` seconds (negative: already expired).
pub fn viewer_token(tenant: &str, ttl: i64) -> String {
    sign(json!({
        "sub": "user-1", "email": "viewer@example.test", "tenant_id": tenant,
        "role": "customer_viewer", "exp": (now() as i64 + ttl),
    }))
}
