//! WebSocket tickets: the page asks `/api/v2/ws-ticket` for a short-lived HS256 token of kind
//! `ws`, signed with `PULSE_JWT_SECRET`, which the gateways verify. Only tickets are signed:
//! sessions are rows, so holding this key does not let anyone make a session.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::session::Session;

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
    /// How many times the user had logged out everywhere when the ticket's session was read:
    /// a gateway told of a later one (`user_changed` `signed_out` with a higher count) refuses
    /// the ticket, and lets in at once one of a session started since.
    pub signouts: u64,
    /// The session the ticket was issued for: a gateway told that it ended (`user_changed`
    /// `session_ended`) closes the ticket's connection and refuses it.
    pub sid: String,
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

impl Tokens {
    pub fn new(secret: &str, issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            issuer,
            audience,
        }
    }

    /// A WebSocket ticket for `session`, valid `ttl` seconds and no longer than the session:
    /// the ticket, its `exp` and how many seconds it is valid (at least one).
    pub fn ticket(&self, session: &Session, ttl: u64) -> anyhow::Result<(String, u64, u64)> {
        let now = unix_now();
        let exp = (now + ttl).min(session.expires_at.max(now + 1));
        let claims = Claims {
            sub: session.user_id.clone(),
            email: session.email.clone(),
            tenant_id: session.tenant.to_string(),
            role: session.role.clone(),
            exp,
            iat: now,
            kind: TICKET_KIND.into(),
            signouts: session.signouts,
            sid: session.id.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, exp, exp - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_proto::TenantId;

    fn session() -> Session {
        Session {
            user_id: "1".into(),
            email: "a@acme.example".into(),
            tenant: TenantId::parse("acme").unwrap(),
            role: "customer_admin".into(),
            signouts: 3,
            id: "00ff00ff00ff00ff".into(),
            expires_at: unix_now() + 3600,
        }
    }

    #[test]
    fn tickets_say_what_they_are_for() {
        let t = Tokens::new("0123456789abcdef0123456789abcdef", None, None);
        let (ticket, exp, valid) = t.ticket(&session(), 60).unwrap();
        assert_eq!(valid, 60);
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
        assert_eq!(claims.signouts, 3);
        assert_eq!(claims.sid, "00ff00ff00ff00ff");
        assert!(exp <= unix_now() + 60);
        // No longer than its session.
        let ending = Session {
            expires_at: unix_now() + 10,
            ..session()
        };
        let (_, exp, valid) = t.ticket(&ending, 60).unwrap();
        assert!(
            exp <= unix_now() + 10 && (1..=10).contains(&valid),
            "{exp} {valid}"
        );
        assert_eq!(claims.tenant_id, "acme");
    }
}
