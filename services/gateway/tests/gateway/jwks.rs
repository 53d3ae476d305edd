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
/// for an unknown kid at most every `min_refetch`.
async fn gateway_with_jwks(app: axum::Router, min_refetch: Duration) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    spawn_gateway_with(|c| {
        c.jwt_secret = None;
        c.jwks_url = Some(format!("http://{jwks_addr}/jwks.json"));
        c.jwks_min_refetch = min_refetch;
    })
    .await
}

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
