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

    /// Writes a `.creds` file to `path` for a new user of the account.
    pub fn write_creds(&self, path: &Path) {
        self.write_creds_of(path, Creds::Valid);
    }

    /// Writes a `.creds` file of the kind `creds` to `path`.
    pub fn write_creds_of(&self, path: &Path, creds: Creds) {
        let user = KeyPair::new_user();
        let stranger = KeyPair::new_account();
        let issuer = match creds {
            Creds::Foreign => &stranger,
            _ => &self.account,
        };
        let mut claims = json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        let mut expires = None;
        let subject = match creds {
            Creds::OtherUser => KeyPair::new_user().public_key(),
            _ => user.public_key(),
        };
        match creds {
            Creds::Expired => expires = Some(1),
            Creds::NotUser => claims["type"] = json!("account"),
            _ => {}
        }
        let token = jwt_expiring(issuer, &subject, claims, expires);
        let seed = match creds {
            Creds::AccountSeed => stranger.seed(),
            _ => user.seed(),
        }
        .expect("a seed");
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

/// What a `.creds` file written by [`Operator::write_creds_of`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creds {
    /// A user of the account, as `nsc` issues it.
    Valid,
    /// A user of an account the server does not know.
    Foreign,
    /// A JWT that expired in 1970.
    Expired,
    /// A JWT about another user than the seed's.
    OtherUser,
    /// A JWT that is not a user's.
    NotUser,
    /// An account's seed in place of the user's.
    AccountSeed,
}

/// A NATS JWT: `nats` claims about `subject`, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, nats: Value) -> String {
    jwt_expiring(issuer, subject, nats, None)
}

/// [`jwt`], expiring at `exp` (unix seconds) when given.
fn jwt_expiring(issuer: &KeyPair, subject: &str, nats: Value, exp: Option<u64>) -> String {
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "jti": format!("{:032X}", rand::random::<u128>()),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": "pulse-test",
        "sub": subject,
        "nats": nats,
    });
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", encode(&header), encode(&claims));
    let signature = issuer.sign(signed.as_bytes()).expect("an NKey signs");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}
