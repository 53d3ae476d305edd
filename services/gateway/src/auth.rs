//! Who is connecting: JWT verification and the claims Pulse relies on.
//!
//! Tokens are HS256 with `PULSE_JWT_SECRET`, or RS256/ES256 with keys from `PULSE_JWKS_URL`.
//! `exp` is required, `nbf` honoured, `iss`/`aud` checked when configured. Every failure maps to
//! a close code: 4001 for anything wrong with the token itself, 4003 for a valid token that does
//! not grant access. The tenant always comes from here, never from a client message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use parking_lot::RwLock;
use pulse_proto::TenantId;
use pulse_proto::client::echo;
use pulse_proto::close;
use serde::Deserialize;

use crate::config::GatewayConfig;

/// Roles that may connect.
pub const ROLES: [&str; 2] = ["customer_admin", "customer_viewer"];

/// A verified connection owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: String,
    pub sub: String,
    pub email: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// When the token was issued, as far as its user's changes go.
    pub issued: Issued,
}

/// When a token was issued, as far as the changes of its user go ([`crate::revoke`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Issued {
    /// `iat`, unix seconds, when the token says so.
    pub iat: Option<u64>,
    /// Pulse's own tickets: how many times the user had logged out everywhere when the
    /// ticket's session was read (claim `signouts`).
    pub signouts: Option<u64>,
    /// Pulse's own tickets: the session they were issued for (claim `sid`, 16 hex digits, read
    /// as the number they write).
    pub session: Option<u64>,
}

/// A token that says only its `iat`.
impl From<Option<u64>> for Issued {
    fn from(iat: Option<u64>) -> Self {
        Self {
            iat,
            ..Self::default()
        }
    }
}

/// The session a `sid` claim (or a `session_ended` change) names: 16 lowercase hex digits.
pub fn session_id(sid: &str) -> Option<u64> {
    let hex = sid.len() == 16 && sid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(sid, 16).ok()).flatten()
}

/// The clock tokens are read by (`exp`, `iat`): unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Signed by a key the gateway has not seen, while the JWKS endpoint does not answer: the
    /// token may be good. A renewal is answered `unavailable`, a connection closed with 4001.
    #[error("cannot verify the token right now: the JWKS endpoint does not answer")]
    Unverifiable,
}

impl AuthError {
    pub fn close_code(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => close::FORBIDDEN,
            _ => close::UNAUTHORIZED,
        }
    }

    /// A short reason for the close frame (at most 123 bytes by the WebSocket spec). The text
    /// may quote the token, so it is cut at a character boundary, never inside a character.
    pub fn reason(&self) -> String {
        let mut r = self.to_string();
        let mut cut = r.len().min(120);
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
        r
    }

    /// Label for the auth-failure metric.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Unverifiable => "unverifiable",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    /// Read leniently: a token minted elsewhere with an odd `iat` is not refused for it.
    #[serde(default)]
    iat: Option<serde_json::Value>,
    /// Pulse's tickets: see [`Issued::signouts`]. Anything but a whole number is left unread.
    #[serde(default)]
    signouts: Option<serde_json::Value>,
    /// Pulse's tickets: see [`Issued::session`]. Anything but its form is left unread.
    #[serde(default)]
    sid: Option<serde_json::Value>,
    /// The user: a string, or a number read as its decimal text (some issuers number their
    /// users), so that the connection counts as that user's and a deletion of `"42"` reaches
    /// it. Any other type names no user.
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<Text>,
    #[serde(default)]
    tenant_id: Option<Text>,
    #[serde(default)]
    role: Option<Text>,
    /// What the token is for. Pulse's own tokens say `ws` (a WebSocket ticket) or `session`
    /// (a web session); tokens minted elsewhere may leave it out.
    #[serde(default)]
    kind: Option<Text>,
}

/// A claim that should be a string: read whatever it is, so that a signed token whose
/// `tenant_id` is a number is refused for that claim (4003), not as undecodable (4001).
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    String(String),
    Other(serde::de::IgnoredAny),
}

impl Text {
    /// A claim the gateway cannot do without: missing or not a string, the token is refused
    /// for good (4003), with `missing` or `not_string` as the reason.
    fn required(
        claim: Option<Text>,
        missing: &'static str,
        not_string: &'static str,
    ) -> Result<String, AuthError> {
        match claim {
            Some(Text::String(s)) => Ok(s),
            Some(Text::Other(_)) => Err(AuthError::Forbidden(not_string)),
            None => Err(AuthError::Forbidden(missing)),
        }
    }

    fn string(claim: Option<Text>) -> Option<String> {
        match claim {
            Some(Text::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// The `kind` of a token that may open a WebSocket.
pub const TICKET_KIND: &str = "ws";

/// Keys fetched from the JWKS URL, by `kid`.
#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
    /// The last fetch begun for an unknown `kid`, answered or not: while the JWKS endpoint
    /// fails, tokens with unknown kids wait for no more than one fetch per
    /// `PULSE_JWKS_MIN_REFETCH_SECONDS`.
    tried_at: Option<Instant>,
}

#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Option<DecodingKey>,
    /// The secret `secret` replaces, accepted too while a rotation is under way.
    previous: Option<DecodingKey>,
    jwks_url: Option<String>,
    jwks: RwLock<JwksCache>,
    /// Unknown `kid`s trigger a refetch at most this often.
    min_refetch: Duration,
    /// Fetched keys are used without asking again for this long (`PULSE_JWKS_MAX_AGE_SECONDS`).
    max_age: Duration,
    refetch: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl Authenticator {
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                secret: config
                    .jwt_secret
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.as_bytes())),
                previous: config
                    .jwt_secret_previous
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.as_bytes())),
                jwks_url: config.jwks_url.clone(),
                jwks: RwLock::new(JwksCache::default()),
                min_refetch: config.jwks_min_refetch,
                max_age: config.jwks_max_age,
                refetch: tokio::sync::Mutex::new(()),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
                leeway: config.jwt_leeway_seconds,
            }),
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.inner.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        // jsonwebtoken compares `iss` and `aud` only when a token carries them: a configured
        // one is also required, or a token minted without it (for another environment sharing
        // the key) would pass.
        let mut required = vec!["exp"];
        match &self.inner.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.inner.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verifies `token` and returns who it speaks for.
    pub async fn verify(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let token = match token.map(str::trim) {
            None | Some("") => return Err(AuthError::Missing),
            Some(t) => t,
        };
        let header = decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed: {}", echo(&e.to_string()))))?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => match &self.inner.secret {
                Some(k) => (k.clone(), Algorithm::HS256),
                None => return Err(AuthError::Invalid("HS256 tokens are not accepted".into())),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header
                    .kid
                    .ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
                self.jwks_key(&kid, header.alg).await?
            }
            other => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {other:?} not accepted"
                )));
            }
        };
        let validation = self.validation(alg);
        let mut decoded = decode::<Claims>(token, &key, &validation);
        if alg == Algorithm::HS256
            && let Some(previous) = &self.inner.previous
            && decoded
                .as_ref()
                .is_err_and(|e| *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature)
        {
            decoded = decode::<Claims>(token, previous, &validation);
        }
        let data = decoded.map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("no {c} claim")),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                other => AuthError::Invalid(echo(&format!("{other:?}"))),
            }
        })?;
        let claims = data.claims;
        // The leeway is for `nbf` (an issuer whose clock runs ahead): a connection ends at its
        // token's `exp` in any case, so a token past it, leeway or not, would be let in only to
        // be closed at once.
        if claims.exp <= unix_now() {
            return Err(AuthError::Expired);
        }
        let kind = match claims.kind {
            Some(Text::Other(_)) => Some("(not a string)".to_owned()),
            kind => Text::string(kind),
        };
        let ticket = kind.as_deref() == Some(TICKET_KIND);
        if let Some(kind) = kind.as_deref()
            && kind != TICKET_KIND
        {
            // A session token (or any other purpose) never opens a WebSocket, even when it is
            // signed with a key the gateway accepts.
            return Err(AuthError::Invalid(format!(
                "a {:?} token is not a WebSocket ticket",
                kind.chars().take(16).collect::<String>()
            )));
        }
        let tenant = Text::required(
            claims.tenant_id,
            "token has no tenant_id",
            "tenant_id is not a string",
        )
        .and_then(|t| TenantId::parse(t).map_err(|_| AuthError::Forbidden("invalid tenant_id")))?;
        let role = Text::required(claims.role, "token has no role", "role is not a string")?;
        if !ROLES.contains(&role.as_str()) {
            return Err(AuthError::Forbidden("role may not connect"));
        }
        // A whole number names the user its decimal text does; `41.0` or `4.1e1` would name
        // another (`"41.0"`), escaping that user's revocation and caps.
        let sub = match claims.sub {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(_) => {
                return Err(AuthError::Forbidden(
                    "sub is neither a string nor an integer",
                ));
            }
        };
        Ok(Principal {
            tenant,
            role,
            sub,
            email: Text::string(claims.email),
            exp: claims.exp,
            issued: Issued {
                iat: claims
                    .iat
                    .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))),
                // Only Pulse's own tickets (HS256, kind `ws`) say what it means: another
                // issuer's claim of that name is not read.
                signouts: claims
                    .signouts
                    .and_then(|v| v.as_u64())
                    .filter(|_| alg == Algorithm::HS256 && ticket),
                session: claims
                    .sid
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .and_then(session_id)
                    .filter(|_| alg == Algorithm::HS256 && ticket),
            },
        })
    }

    async fn jwks_key(
        &self,
        kid: &str,
        alg: Algorithm,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if self.inner.jwks_url.is_none() {
            return Err(AuthError::Invalid(format!(
                "{alg:?} tokens are not accepted"
            )));
        }
        if let Some(found) = self.cached(kid, alg) {
            return self.known_key(kid, alg, found).await;
        }
        {
            // An async mutex held across the fetch on purpose (single flight): tokens with
            // unknown kids arriving together wait for one fetch instead of each making one.
            // No synchronous lock is held across it.
            let _one_at_a_time = self.inner.refetch.lock().await;
            let recent = {
                let mut cache = self.inner.jwks.write();
                let recent = [cache.fetched_at, cache.tried_at]
                    .into_iter()
                    .flatten()
                    .any(|t| t.elapsed() < self.inner.min_refetch);
                if !recent {
                    cache.tried_at = Some(Instant::now());
                }
                recent
            };
            if !recent && let Err(e) = self.refresh_jwks().await {
                // Without the URL: it is configuration kept out of sight (it may hold a key).
                tracing::warn!(error = %e.without_url(), "cannot fetch JWKS");
            }
        }
        self.cached(kid, alg).unwrap_or_else(|| {
            let cache = self.inner.jwks.read();
            // The last fetch failed (none succeeded since it began): the key may be there.
            let failed = match (cache.fetched_at, cache.tried_at) {
                (None, _) => true,
                (Some(fetched), Some(tried)) => tried > fetched,
                (Some(_), None) => false,
            };
            Err(if failed {
                AuthError::Unverifiable
            } else {
                AuthError::Invalid("unknown signing key".into())
            })
        })
    }

    /// Answers for a `kid` the cache has (`found`). Keys fetched within the max age answer at
    /// once. Older, the document is fetched again first, so a key the issuer removed (a leaked
    /// one) stops working; meanwhile, and while the endpoint fails, the keys there were
    /// answer: one fetch at a time, at most one per `PULSE_JWKS_MIN_REFETCH_SECONDS`, never a
    /// queue of tokens waiting on an endpoint that hangs.
    async fn known_key(
        &self,
        kid: &str,
        alg: Algorithm,
        found: Result<(DecodingKey, Algorithm), AuthError>,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        let (fresh, tried_lately) = {
            let cache = self.inner.jwks.read();
            let within = |at: Option<Instant>, age: Duration| at.is_some_and(|t| t.elapsed() < age);
            (
                within(cache.fetched_at, self.inner.max_age),
                within(cache.tried_at, self.inner.min_refetch),
            )
        };
        if fresh || tried_lately {
            return found;
        }
        let Ok(_one_at_a_time) = self.inner.refetch.try_lock() else {
            return found;
        };
        self.inner.jwks.write().tried_at = Some(Instant::now());
        if let Err(e) = self.refresh_jwks().await {
            tracing::warn!(error = %e.without_url(), "cannot fetch JWKS; the keys fetched before stay");
            return found;
        }
        self.cached(kid, alg)
            .unwrap_or_else(|| Err(AuthError::Invalid("unknown signing key".into())))
    }

    fn cached(
        &self,
        kid: &str,
        alg: Algorithm,
    ) -> Option<Result<(DecodingKey, Algorithm), AuthError>> {
        let cache = self.inner.jwks.read();
        let (key, key_alg) = cache.keys.get(kid)?;
        if *key_alg != alg {
            return Some(Err(AuthError::Invalid(
                "algorithm does not match the key".into(),
            )));
        }
        Some(Ok((key.clone(), alg)))
    }

    /// Fetches the JWKS document and replaces the cache.
    pub async fn refresh_jwks(&self) -> Result<(), reqwest::Error> {
        let Some(url) = &self.inner.jwks_url else {
            return Ok(());
        };
        let set: JwkSet = self
            .inner
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (key, alg));
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping unusable JWKS key"),
            }
        }
        let mut cache = self.inner.jwks.write();
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
