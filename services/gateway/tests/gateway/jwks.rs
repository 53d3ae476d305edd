//! RS256 and ES256 tokens verified with keys from a JWKS URL, and key rotation.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use parking_lot::Mutex;
use serde_json::json;

use crate::helpers::*;

const RSA: &[u8] = include_bytes!("keys/rs256.pem");
const EC: &[u8] = include_bytes!("keys/es256.pem");

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn signed(key: &EncodingKey, alg: Algorithm, kid: &str, tenant: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(
        &header,
        &json!({"sub": "svc", "tenant_id": tenant, "role": "customer_admin", "exp": now() + 60}),
        key,
    )
    .unwrap()
}

/// A gateway that takes keys only from the JWKS `app` serves at `/jwks.json`, fetching it again
/// for an unknown kid at most every `min_refetch`, and before using keys fetched over a second
/// (or `min_refetch`) ago (`PULSE_JWKS_MAX_AGE_SECONDS`).
async fn gateway_with_jwks(app: axum::Router, min_refetch: Duration) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    spawn_gateway_with(|c| {
        c.jwt_secret = None;
        c.jwks_url = Some(format!("http://{jwks_addr}/jwks.json"));
        c.jwks_min_refetch = min_refetch;
        c.jwks_max_age = JWKS_MAX_AGE.max(min_refetch);
    })
    .await
}

const JWKS_MAX_AGE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_jwks_and_rotation_is_picked_up() {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let ec = EncodingKey::from_ec_pem(EC).unwrap();
    let served = Arc::new(Mutex::new(JwkSet {
        keys: vec![
            jwk(&rsa, Algorithm::RS256, "rsa-1"),
            jwk(&ec, Algorithm::ES256, "ec-1"),
        ],
    }));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let served = served.clone();
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let set = served.lock().clone();
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { axum::Json(set) }
            }),
        )
    };
    let gw = gateway_with_jwks(app, Duration::ZERO).await;
    let tenant = unique("jwks");

    for token in [
        signed(&rsa, Algorithm::RS256, "rsa-1", &tenant),
        signed(&ec, Algorithm::ES256, "ec-1", &tenant),
    ] {
        let mut c = connect(&gw.url(&token)).await;
        c.assert_alive().await;
    }
    // HS256 is refused when no secret is configured, and so is a key the JWKS doesn't have.
    let mut c = gw.viewer(&tenant).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.code, 4001);
    let mut c = connect(&gw.url(&signed(&rsa, Algorithm::RS256, "unknown", &tenant))).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.code, 4001);
    // An RS256 header on the EC key's kid is refused.
    let mut c = connect(&gw.url(&signed(&rsa, Algorithm::RS256, "ec-1", &tenant))).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.code, 4001);

    // Rotation: a new kid appears in the JWKS and is fetched on first sight.
    served
        .lock()
        .keys
        .push(jwk(&rsa, Algorithm::RS256, "rsa-2"));
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    let mut c = connect(&gw.url(&signed(&rsa, Algorithm::RS256, "rsa-2", &tenant))).await;
    c.assert_alive().await;
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) > before);

    // Removal: a key the issuer drops (a leaked one) is refused once the keys fetched are older
    // than the max age, without an unknown kid having to come along; the others still verify.
    served
        .lock()
        .keys
        .retain(|k| k.common.key_id.as_deref() != Some("rsa-1"));
    // The keys fetched for rsa-2 above are younger than the max age until it passes.
    tokio::time::sleep(JWKS_MAX_AGE + Duration::from_millis(100)).await;
    let mut c = connect(&gw.url(&signed(&rsa, Algorithm::RS256, "rsa-1", &tenant))).await;
    assert_eq!(c.closed(Duration::from_secs(5)).await.code, 4001);
    for token in [
        signed(&rsa, Algorithm::RS256, "rsa-2", &tenant),
        signed(&ec, Algorithm::ES256, "ec-1", &tenant),
    ] {
        let mut c = connect(&gw.url(&token)).await;
        c.assert_alive().await;
    }
}

#[tokio::test]
async fn a_failing_jwks_endpoint_is_asked_once_per_refetch_interval_however_many_tokens_come() {
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { axum::http::StatusCode::SERVICE_UNAVAILABLE }
            }),
        )
    };
    let gw = gateway_with_jwks(app, Duration::from_secs(60)).await;
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let tenant = unique("jwksdown");
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    for n in 0..5 {
        let token = signed(&rsa, Algorithm::RS256, &format!("kid-{n}"), &tenant);
        let mut c = connect(&gw.url(&token)).await;
        assert_eq!(c.closed(Duration::from_secs(5)).await.code, 4001);
    }
    let asked = fetches.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(asked <= 1, "the failing endpoint was asked {asked} times");
}

/// A renewal signed by a key the gateway has not seen, while the JWKS endpoint fails, cannot be
/// verified just then: it is answered `unavailable` (naming no channel), the current token
/// stays in force, and the same renewal passes once the endpoint answers with the key. A key
/// the answering endpoint does not hold is `invalid_token`.
#[tokio::test]
async fn a_renewal_the_failing_jwks_cannot_verify_is_unavailable_then_passes_once_it_answers() {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let up = up.clone();
        let keys = JwkSet {
            keys: vec![jwk(&rsa, Algorithm::RS256, "new-key")],
        };
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let answer = up
                    .load(std::sync::atomic::Ordering::SeqCst)
                    .then(|| axum::Json(keys.clone()));
                async move { answer.ok_or(axum::http::StatusCode::SERVICE_UNAVAILABLE) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // HS256 tokens at connect (the helpers' secret), keys from the JWKS for the renewals.
    let gw = spawn_gateway_with(|c| {
        c.jwks_url = Some(format!("http://{jwks_addr}/jwks.json"));
        c.jwks_min_refetch = Duration::ZERO;
    })
    .await;
    let tenant = unique("jwksrenew");
    let mut c = gw.viewer(&tenant).await;
    c.assert_alive().await;
    let renewal =
        json!({"action": "auth", "token": signed(&rsa, Algorithm::RS256, "new-key", &tenant)});

    c.send(renewal.clone()).await;
    let m = c.next(T).await;
    assert_eq!(
        (&m["type"], &m["code"]),
        (&json!("error"), &json!("unavailable")),
        "{m}"
    );
    assert!(m.get("channel").is_none(), "{m}");
    c.assert_alive().await;

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    c.send(renewal).await;
    assert_eq!(c.next(T).await["type"], "authenticated");
    let unknown = signed(&rsa, Algorithm::RS256, "never-served", &tenant);
    c.send(json!({"action": "auth", "token": unknown})).await;
    let m = c.next(T).await;
    assert_eq!(m["code"], "invalid_token", "{m}");
}

/// The one JWKS fetch a [`JwksHold`] is armed for: told when it begins, answered once released.
type HeldFetch = (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

/// A JWKS endpoint that answers at once, except the fetch made while armed.
#[derive(Clone)]
struct JwksHold {
    armed: Arc<Mutex<Option<HeldFetch>>>,
    keys: Arc<Mutex<JwkSet>>,
}

impl JwksHold {
    fn new() -> Self {
        Self {
            armed: Arc::default(),
            keys: Arc::new(Mutex::new(JwkSet { keys: Vec::new() })),
        }
    }

    /// Serves its keys, none until [`JwksHold::add`], on a port of its own; returns its URL.
    async fn serve(&self) -> String {
        let (armed, keys) = (self.armed.clone(), self.keys.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let held = armed.lock().take();
                let keys = keys.clone();
                async move {
                    if let Some((began, release)) = held {
                        let _ = began.send(());
                        let _ = release.await;
                    }
                    axum::Json(keys.lock().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks.json")
    }

    /// Holds the next fetch: the first receiver resolves when it begins; sending on the
    /// returned sender answers it.
    fn arm(
        &self,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (began, began_rx) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        *self.armed.lock() = Some((began, release_rx));
        (began_rx, release)
    }

    /// Has `c` renew its token with `key` as `kid` (served from now on, when `served`), and
    /// holds the fetch of it once it began; sending on the returned sender answers it.
    async fn renew_held(
        &self,
        c: &mut Client,
        key: &EncodingKey,
        kid: &str,
        tenant: &str,
        served: bool,
    ) -> tokio::sync::oneshot::Sender<()> {
        if served {
            self.add(jwk(key, Algorithm::RS256, kid));
        }
        let (began, release) = self.arm();
        let token = signed(key, Algorithm::RS256, kid, tenant);
        c.send(json!({"action": "auth", "token": token})).await;
        tokio::time::timeout(T, began)
            .await
            .expect("the renewal's JWKS fetch began")
            .unwrap();
        release
    }

    /// Serves `key` from now on, beside the keys served already.
    fn add(&self, key: Jwk) {
        self.keys.lock().keys.push(key);
    }

    /// A gateway that takes HS256 tokens at connect (the helpers' secret) and fetches keys for
    /// renewals from this endpoint, on every unknown kid; adjusted by `configure`.
    async fn gateway(&self, configure: impl FnOnce(&mut pulse_gateway::GatewayConfig)) -> Gateway {
        let jwks_url = self.serve().await;
        spawn_gateway_with(|c| {
            c.jwks_url = Some(jwks_url);
            c.jwks_min_refetch = Duration::ZERO;
            configure(c);
        })
        .await
    }
}

/// A client renews its token with a key the gateway has not seen, while the JWKS endpoint is
/// slow to answer. The renewal waits beside the connection: the client's events keep coming
/// meanwhile (a stalled connection would fall behind and be closed with 4008), and what it
/// sends after the renewal (a frame that is no request too) is answered once the renewal is,
/// in order, under the fresh token.
/// A second renewal, with a key the endpoint does not have, is refused the same way.
#[tokio::test]
async fn a_renewal_waiting_for_the_jwks_holds_no_pushes_and_answers_what_came_after_it_in_order() {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let jwks = JwksHold::new();
    let gw = jwks.gateway(|_| {}).await;
    let nats = nats().await;
    let tenant = unique("renewheld");
    let mut c = gw.viewer(&tenant).await;
    c.assert_subscribes(json!({"type": "events", "topic": "tickets"}))
        .await;
    // Rotated in after the gateway's first fetch, so its renewal makes the gateway fetch again.
    jwks.add(jwk(&rsa, Algorithm::RS256, "rotated-in"));

    for (kid, seqs, answer) in [
        ("rotated-in", 1..=3, "authenticated"),
        ("unknown-kid", 4..=6, "error"),
    ] {
        let (began, release) = jwks.arm();
        let token = signed(&rsa, Algorithm::RS256, kid, &tenant);
        c.send(json!({"action": "auth", "token": token})).await;
        tokio::time::timeout(T, began)
            .await
            .expect("the renewal's JWKS fetch began")
            .unwrap();
        c.send(json!({"action": "subscribe", "type": "events", "topic": kid}))
            .await;
        c.send(json!({"action": "dance"})).await;
        c.send(json!({"action": "ping"})).await;
        // Pushed while the fetch is held (well within the verifier's 5 s fetch timeout, which
        // would otherwise free a held connection), and nothing else: the renewal and what
        // came after it are not answered yet.
        publish_events(&nats, &tenant, "tickets", seqs.clone()).await;
        for seq in seqs {
            let m = c.next(Duration::from_secs(2)).await;
            assert_eq!(
                (&m["type"], &m["seq"]),
                (&json!("event"), &json!(seq)),
                "{m}"
            );
        }
        if let Some(m) = c.try_next(Duration::from_millis(300)).await {
            panic!("answered while the renewal is out: {m}");
        }

        release.send(()).unwrap();
        let m = c.next(T).await;
        assert_eq!(m["type"], answer, "{m}");
        if answer == "error" {
            assert_eq!(m["code"], "invalid_token", "{m}");
        }
        let m = c.next(T).await;
        assert_eq!(
            (&m["type"], &m["topic"]),
            (&json!("subscribed"), &json!(kid)),
            "{m}"
        );
        let m = c.next(T).await;
        assert_eq!(m["code"], "unknown_action", "{m}");
        assert_eq!(c.next(T).await["type"], "pong");
    }
    c.assert_alive().await;
}

/// Frames sent while a renewal waits for the JWKS are answered after it, in order: the
/// `rate_limited` one of a client past its burst too, not ahead of the renewal's answer.
#[tokio::test]
async fn a_rate_limit_reached_while_a_renewal_waits_is_told_after_it_in_order() {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let jwks = JwksHold::new();
    let gw = jwks
        .gateway(|c| {
            c.client_msgs_per_second = 1;
            c.client_msgs_burst = 4;
        })
        .await;
    let tenant = unique("renewlimited");
    let mut c = gw.viewer(&tenant).await;
    let release = jwks
        .renew_held(&mut c, &rsa, "rotated-in", &tenant, true)
        .await;
    // Three pings fit the burst with the auth; the fourth and fifth are over it.
    for _ in 0..5 {
        c.send(json!({"action": "ping"})).await;
    }
    if let Some(m) = c.try_next(Duration::from_millis(300)).await {
        panic!("answered while the renewal is out: {m}");
    }
    release.send(()).unwrap();
    let mut answers = Vec::new();
    for _ in 0..5 {
        let m = c.next(T).await;
        answers.push(
            m["code"]
                .as_str()
                .or(m["type"].as_str())
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        answers,
        ["authenticated", "pong", "pong", "pong", "rate_limited"]
    );
}

/// A renewal sent before the token expires, whose verification waits for the JWKS until after
/// the expiry, does not end the connection with 4001: it goes on under the fresh token once
/// the renewal is verified (the wait is bounded by the verifier's fetch timeout). Refused, the
/// connection ends with 4001 then, and what was sent after the renewal is not served under
/// the expired token.
#[tokio::test]
async fn a_renewal_sent_before_the_expiry_and_verified_after_it_keeps_the_connection() {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let jwks = JwksHold::new();
    let gw = jwks.gateway(|_| {}).await;
    let tenant = unique("renewexp");
    for (kid, served, answer) in [("late", true, "authenticated"), ("nope", false, "error")] {
        let exp = now() + 2;
        let mut c = connect(&gw.url(&viewer_token(&tenant, 2))).await;
        let release = jwks.renew_held(&mut c, &rsa, kid, &tenant, served).await;
        c.send(json!({"action": "subscribe", "type": "alerts"}))
            .await;
        // The fetch is held until the first token has expired.
        eventually("the first token expired", T, || async { now() > exp }).await;
        release.send(()).unwrap();
        let m = c.next(T).await;
        assert_eq!(m["type"], answer, "{m}");
        if served {
            assert_eq!(c.next(T).await["type"], "subscribed");
            c.assert_alive().await;
        } else {
            assert_eq!(m["code"], "invalid_token", "{m}");
            assert_eq!(c.closed_at_once(T).await.code, 4001);
        }
    }
}
