//! NATS decentralized authentication (operator mode): a `.creds` file, as `nsc` writes it,
//! holds the service user's JWT (signed by its account) and the user's NKey seed. The client
//! sends the JWT and signs the server's challenge with the seed: no secret crosses the wire.
//!
//! The file is read when the configuration is parsed: a missing file, or one without a user
//! JWT and a user seed, stops the service at start with the variable named. Its content is
//! kept out of `Debug` output.

use std::path::Path;

use async_nats::ConnectOptions;

/// The variable that names the credentials file.
pub const CREDS_FILE_VAR: &str = "PULSE_NATS_CREDS_FILE";

/// What a `.creds` file begins its JWT with.
const JWT_MARK: &str = "BEGIN NATS USER JWT";

/// A user's credentials (JWT and seed), read from a `.creds` file.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsCreds(String);

impl NatsCreds {
    /// Reads and checks the credentials in `path`.
    pub fn read(path: &Path) -> Result<NatsCreds, String> {
        let text = super::read_file(CREDS_FILE_VAR, path)?;
        if !text.contains(JWT_MARK) || ConnectOptions::with_credentials(&text).is_err() {
            return Err(format!(
                "{CREDS_FILE_VAR}: {} holds no NATS user JWT and NKey seed (a .creds file, as \
                 `nsc generate creds` writes it)",
                path.display()
            ));
        }
        Ok(NatsCreds(text))
    }

    /// `options` authenticating with these credentials.
    pub(super) fn apply(&self, options: ConnectOptions) -> ConnectOptions {
        match options.credentials(&self.0) {
            Ok(options) => options,
            // Checked when read: not reached.
            Err(e) => {
                tracing::error!(error = %e, "{CREDS_FILE_VAR}: the credentials cannot be used");
                ConnectOptions::new()
            }
        }
    }
}

impl std::fmt::Debug for NatsCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsCreds(***)")
    }
}

/// The check of `PULSE_NATS_CREDS_FILE`: the file's credentials. Credentials given in place of
/// their file are refused without being repeated.
pub fn creds_file(path: &str) -> Result<NatsCreds, String> {
    if path.contains(JWT_MARK) || path.contains('\n') {
        return Err(format!(
            "{CREDS_FILE_VAR} must name the file that holds the credentials, not hold them"
        ));
    }
    NatsCreds::read(Path::new(path))
}
