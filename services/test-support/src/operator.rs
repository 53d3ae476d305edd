//! NATS in operator mode (decentralized JWT authentication) for tests: an operator, a system
//! account and an account with JetStream, each with its signed JWT, a nats-server
//! configuration that trusts them, and user credentials (`.creds` files) issued by the account,
//! as `nsc` would issue them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// An operator and its accounts, in memory.
pub struct Operator {
    operator: KeyPair,
    system: KeyPair,
    account: KeyPair,
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator {
    pub fn new() -> Operator {
        Operator {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            account: KeyPair::new_account(),
        }
    }

    /// The lines of a nats-server configuration that trust this operator and know its two
    /// accounts (a memory resolver), for [`crate::nats::PrivateNats::configured`].
    pub fn server_config(&self) -> String {
        let operator = jwt(
            &self.operator,
            &self.operator.public_key(),
            json!({"type": "operator", "version": 2}),
        );
        let unlimited = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        let system = jwt(
            &self.operator,
            &self.system.public_key(),
            json!({"limits": unlimited, "type": "account", "version": 2}),
        );
        let mut limits = unlimited.clone();
        for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[key] = json!(-1);
        }
        let account = jwt(
            &self.operator,
            &self.account.public_key(),
            json!({"limits": limits, "type": "account", "version": 2}),
        );
        format!(
            "operator: {operator}\nsystem_account: {system_key}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system_key}: {system}\n  {account_key}: {account}\n}}\n",
            system_key = self.system.public_key(),
            account_key = self.account.public_key(),
        )
    }

    /// Writes a `.creds` file to `path` for a new user of the account (of another account's
    /// signing when `foreign`: a user this server does not trust).
    pub fn write_creds(&self, path: &Path, foreign: bool) {
        let user = KeyPair::new_user();
        let stranger = KeyPair::new_account();
        let issuer = if foreign { &stranger } else { &self.account };
        let claims = json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        let token = jwt(issuer, &user.public_key(), claims);
        let seed = user.seed().expect("a user seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        std::fs::write(path, creds).expect("cannot write the creds file");
    }
}

/// A NATS JWT: `nats` claims about `subject`, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, nats: Value) -> String {
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({
        "jti": format!("{:032X}", rand::random::<u128>()),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": "pulse-test",
        "sub": subject,
        "nats": nats,
    });
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", encode(&header), encode(&claims));
    let signature = issuer.sign(signed.as_bytes()).expect("an NKey signs");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}
