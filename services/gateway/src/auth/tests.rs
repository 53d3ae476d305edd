use clap::Parser;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
}

fn auth() -> Authenticator {
    auth_with(&[])
}

fn auth_with(args: &[&str]) -> Authenticator {
    let config = Cli::try_parse_from(["gw", "--jwt-secret", SECRET].iter().chain(args))
        .unwrap()
        .config;
    Authenticator::new(&config)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn accepts_a_good_token() {
    let t = token(json!({"sub": "u1", "email": "a@b.c", "tenant_id": "acme",
                         "role": "customer_viewer", "exp": now() + 60}));
    let p = auth().verify(Some(&t)).await.unwrap();
    assert_eq!(p.tenant.as_str(), "acme");
    assert_eq!(p.role, "customer_viewer");
    assert_eq!(p.email.as_deref(), Some("a@b.c"));
    // Claims the gateway only passes on may be of any type; an integer `sub` names the
    // user its decimal text does, and a token may name none.
    let t = token(json!({"sub": 7, "email": null, "tenant_id": "acme",
                         "role": "customer_viewer", "exp": now() + 60}));
    let p = auth().verify(Some(&t)).await.unwrap();
    assert_eq!((p.sub.as_str(), p.email), ("7", None));
    for nobody in [json!(null), json!("")] {
        let t = token(json!({"sub": nobody, "tenant_id": "acme",
                             "role": "customer_viewer", "exp": now() + 60}));
        assert_eq!(auth().verify(Some(&t)).await.unwrap().sub, "");
    }
    // Another `sub` would name another user than the one it means (`41.0` is not `"41"`),
    // outside that user's revocation and caps: refused.
    for odd in [
        json!(41.0),
        json!(4.1e1),
        json!(true),
        json!({"id": 41}),
        json!([41]),
    ] {
        let t = token(json!({"sub": odd, "tenant_id": "acme",
                             "role": "customer_viewer", "exp": now() + 60}));
        let err = auth().verify(Some(&t)).await.unwrap_err();
        // Objects and arrays are not read as claims at all (4001); the rest is named (4003).
        let expected = if odd.is_object() || odd.is_array() {
            close::UNAUTHORIZED
        } else {
            close::FORBIDDEN
        };
        assert_eq!(err.close_code(), expected, "{odd}: {err}");
    }
}

/// During a rotation, a token signed with the secret being replaced is still accepted; one
/// signed with neither is not, and without the previous secret configured the old one is not.
#[tokio::test]
async fn a_token_signed_with_the_previous_secret_passes_while_it_is_configured() {
    const OLD: &str = "the-secret-being-replaced-0123456789";
    let signed_with = |secret: &str| {
        let claims = json!({"sub": "u1", "tenant_id": "acme", "role": "customer_viewer",
                            "exp": now() + 60});
        let key = EncodingKey::from_secret(secret.as_bytes());
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let rotating = auth_with(&["--jwt-secret-previous", OLD]);
    for secret in [SECRET, OLD] {
        let verified = rotating.verify(Some(&signed_with(secret))).await;
        assert_eq!(verified.unwrap().sub, "u1", "{secret}");
    }
    let other = signed_with("a-third-secret-nobody-configured-000");
    let err = rotating.verify(Some(&other)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        auth().verify(Some(&other)).await.unwrap_err().to_string()
    );
    assert_eq!(err.label(), "invalid");
    assert!(auth().verify(Some(&signed_with(OLD))).await.is_err());
}

/// A configured issuer and audience are required, not only compared when present: a token
/// minted without them (by another environment's web service sharing the key) is refused.
#[tokio::test]
async fn a_configured_issuer_and_audience_must_be_in_the_token() {
    let strict = auth_with(&["--jwt-issuer", "pulse-prod", "--jwt-audience", "gateways"]);
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"sub": "u1", "tenant_id": "acme", "role": "customer_viewer",
                           "exp": now() + 60});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token(c)
    };
    let both = claims(json!({"iss": "pulse-prod", "aud": "gateways"}));
    assert_eq!(strict.verify(Some(&both)).await.unwrap().sub, "u1");
    for refused in [
        json!({}),
        json!({"iss": "pulse-prod"}),
        json!({"aud": "gateways"}),
        json!({"iss": "pulse-staging", "aud": "gateways"}),
        json!({"iss": "pulse-prod", "aud": "other"}),
    ] {
        let err = strict.verify(Some(&claims(refused.clone()))).await;
        let err = err.expect_err(&refused.to_string());
        assert_eq!(err.label(), "invalid", "{refused}: {err}");
    }
    // Unconfigured, neither is asked for, and any value passes.
    let t = claims(json!({"iss": "anyone", "aud": "anything"}));
    assert!(auth().verify(Some(&t)).await.is_ok());
    assert!(auth().verify(Some(&claims(json!({})))).await.is_ok());
}

#[tokio::test]
async fn a_token_quoted_in_the_close_reason_is_cut_between_characters() {
    // The header's `alg` is echoed in the parse error; each `é` is two bytes, so byte 120
    // of the reason falls inside one.
    let header = base64url(&format!(r#"{{"alg":"{}","typ":"JWT"}}"#, "é".repeat(200)));
    let err = auth()
        .verify(Some(&format!("{header}.e30.c2ln")))
        .await
        .unwrap_err();
    assert_eq!(err.label(), "invalid");
    let message = err.to_string();
    let quoted = message.chars().filter(|&c| c == 'é').count();
    assert!(
        quoted > 0 && quoted <= 64,
        "at most 64 characters quoted: {message}"
    );
    assert!(message.len() > 120, "{message}");
    let reason = err.reason();
    assert!(reason.len() <= 120 && reason.len() >= 100, "{reason}");
    assert!(message.starts_with(&reason), "{reason}");
}

fn base64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn every_bad_token_gets_its_code() {
    let a = auth();
    let exp = now() + 60;
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 4001, "missing"),
        (Some("".into()), 4001, "missing"),
        (Some("not.a.jwt".into()), 4001, "invalid"),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": "customer_admin"}),
            )),
            4001,
            "invalid",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": "customer_admin", "exp": now() - 3600}),
            )),
            4001,
            "expired",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": "customer_admin", "exp": exp, "nbf": now() + 3600}),
            )),
            4001,
            "not_yet_valid",
        ),
        (
            Some(token(json!({"role": "customer_admin", "exp": exp}))),
            4003,
            "forbidden",
        ),
        (
            Some(token(json!({"tenant_id": "acme", "exp": exp}))),
            4003,
            "forbidden",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": "superuser", "exp": exp}),
            )),
            4003,
            "forbidden",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme.>", "role": "customer_admin", "exp": exp}),
            )),
            4003,
            "forbidden",
        ),
        // Claims of the wrong type: refused for that claim, not as undecodable.
        (
            Some(token(
                json!({"tenant_id": 42, "role": "customer_admin", "exp": exp}),
            )),
            4003,
            "forbidden",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": ["customer_admin"], "exp": exp}),
            )),
            4003,
            "forbidden",
        ),
        (
            Some(token(
                json!({"tenant_id": "acme", "role": "customer_admin", "exp": exp, "kind": 5}),
            )),
            4001,
            "invalid",
        ),
    ];
    for (t, code, label) in cases {
        let err = a.verify(t.as_deref()).await.unwrap_err();
        assert_eq!(
            (err.close_code(), err.label()),
            (code, label),
            "{t:?}: {err}"
        );
    }
}

#[tokio::test]
async fn refuses_alg_none_and_wrong_keys() {
    let a = auth();
    let claims = json!({"tenant_id": "acme", "role": "customer_admin", "exp": now() + 60});
    // alg: none, hand-built.
    use base64_free::encode_url;
    let none = format!(
        "{}.{}.",
        encode_url(br#"{"alg":"none","typ":"JWT"}"#),
        encode_url(claims.to_string().as_bytes())
    );
    assert_eq!(a.verify(Some(&none)).await.unwrap_err().close_code(), 4001);
    let wrong = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    assert_eq!(
        a.verify(Some(&wrong)).await.unwrap_err(),
        AuthError::Invalid("bad signature".into())
    );
    // HS384 is not accepted even with the right secret.
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(a.verify(Some(&hs384)).await.unwrap_err().close_code(), 4001);
}

/// Base64url without padding, enough to forge test tokens.
mod base64_free {
    pub fn encode_url(input: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
