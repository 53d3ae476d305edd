//! NATS decentralized authentication (operator mode): a `.creds` file, as `nsc` writes it,
//! holds the service user's JWT (signed by its account) and the user's NKey seed. The client
//! sends the JWT and signs the server's challenge with the seed: no secret crosses the wire.
//!
//! The file is read when the configuration is parsed: a missing file, or one without a user
//! JWT and the seed of that user, or whose JWT has expired, stops the service at start with the
//! variable named. It is read again at every connect ([`super::signing`]). Whether the account
//! that signed the JWT is one the server trusts only the server can tell.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::signing::{self, Identity, SigningFile};

/// The variable that names the credentials file.
pub const CREDS_FILE_VAR: &str = "PULSE_NATS_CREDS_FILE";

/// A user's credentials (JWT and seed), from a `.creds` file; `Debug` shows nothing of them.
#[derive(Clone, Debug)]
pub struct NatsCreds(pub(super) SigningFile);

/// The first line that is not blank after the line that begins the section `begin`.
fn section<'a>(text: &'a str, begin: &str) -> Option<&'a str> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| l.contains(begin))?;
    lines.find(|l| !l.is_empty())
}

fn parse(text: &str) -> Result<Identity, String> {
    const NO_CREDS: &str =
        "holds no NATS user JWT and NKey seed (a .creds file, as `nsc generate creds` writes it)";
    let (Some(jwt), Some(seed)) = (
        section(text, "BEGIN NATS USER JWT"),
        section(text, "BEGIN USER NKEY SEED"),
    ) else {
        return Err(NO_CREDS.to_owned());
    };
    let public = signing::user_key(seed)?;
    let claims = jwt
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .ok_or_else(|| NO_CREDS.to_owned())?;
    // Version 2 says the type under `nats`, version 1 beside it.
    if claims["nats"]["type"] != "user" && claims["type"] != "user" {
        return Err("holds a JWT that is not a user's".to_owned());
    }
    if claims["sub"] != public.as_str() {
        return Err("holds a user JWT of another user than its seed's".to_owned());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 0, as absent, never expires.
    if claims["exp"]
        .as_u64()
        .is_some_and(|exp| exp > 0 && exp <= now)
    {
        return Err("holds a user JWT that has expired".to_owned());
    }
    Ok(Identity {
        jwt: Some(jwt.to_owned()),
        seed: seed.to_owned(),
    })
}

/// The check of `PULSE_NATS_CREDS_FILE`: the file's credentials. Credentials (or a seed, or a
/// JWT) given in place of their file are refused without being repeated.
pub fn creds_file(path: &str) -> Result<NatsCreds, String> {
    SigningFile::checked(CREDS_FILE_VAR, path, "the credentials", parse).map(NatsCreds)
}
