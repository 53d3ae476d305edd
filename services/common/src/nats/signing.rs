//! Credentials that sign the server's challenge (an NKey seed, a `.creds` file) read from
//! their file: checked when the configuration is parsed, and read again at every connect, so
//! that credentials rotated in place (a mounted Secret updated) are taken up at the next
//! reconnect without a restart. A file that cannot be read then, or that holds no valid
//! credentials (caught mid-write), leaves the last good ones in use, with a warning. Nothing
//! of them reaches `Debug` output or a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_nats::{Auth, AuthError, ConnectOptions};
use nkeys::KeyPair;
use parking_lot::Mutex;

/// Who the service is to the server: a user's seed, and the user's JWT in operator mode.
#[derive(Clone)]
pub(super) struct Identity {
    pub(super) jwt: Option<String>,
    pub(super) seed: String,
}

/// Reads an [`Identity`] out of a file's text, or says what is wrong with it (after the
/// file's name: "holds no NKey seed").
pub(super) type Parse = fn(&str) -> Result<Identity, String>;

/// A file of credentials, named by the setting `var`; `Debug` shows nothing of them.
#[derive(Clone)]
pub(super) struct SigningFile {
    var: &'static str,
    path: PathBuf,
    parse: Parse,
    last: Arc<Mutex<Identity>>,
}

impl SigningFile {
    /// Reads and checks the credentials in `path`.
    pub(super) fn read(var: &'static str, path: &Path, parse: Parse) -> Result<Self, String> {
        let identity = read_identity(var, path, parse)?;
        Ok(SigningFile {
            var,
            path: path.to_owned(),
            parse,
            last: Arc::new(Mutex::new(identity)),
        })
    }

    /// The check of the setting `var` whose value names a file of credentials: the file's,
    /// read by `parse`. A value that is a secret itself ([`is_secret`]) is refused without
    /// being repeated: "`var` must name the file that holds `what`, not `what`".
    pub(super) fn checked(
        var: &'static str,
        value: &str,
        what: &str,
        parse: Parse,
    ) -> Result<Self, String> {
        if is_secret(value) {
            return Err(format!(
                "{var} must name the file that holds {what}, not {what}"
            ));
        }
        Self::read(var, Path::new(value), parse)
    }

    /// The credentials as the file holds them now, or the last good ones.
    fn current(&self) -> Identity {
        match read_identity(self.var, &self.path, self.parse) {
            Ok(identity) => {
                *self.last.lock() = identity.clone();
                identity
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the NATS credentials read before");
                self.last.lock().clone()
            }
        }
    }

    /// Options that answer each connect's challenge with the credentials read then.
    pub(super) fn options(&self) -> ConnectOptions {
        let file = self.clone();
        ConnectOptions::with_auth_callback(move |nonce| {
            let file = file.clone();
            async move {
                // A file read: off the runtime's threads.
                let identity = tokio::task::spawn_blocking(move || file.current())
                    .await
                    .map_err(AuthError::new)?;
                let key = KeyPair::from_seed(&identity.seed).map_err(AuthError::new)?;
                let mut auth = Auth::new();
                auth.signature = Some(key.sign(&nonce).map_err(AuthError::new)?);
                // With a JWT, the server takes the public key from it.
                match identity.jwt {
                    Some(jwt) => auth.jwt = Some(jwt),
                    None => auth.nkey = Some(key.public_key()),
                }
                Ok(auth)
            }
        })
    }
}

impl std::fmt::Debug for SigningFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn read_identity(var: &str, path: &Path, parse: Parse) -> Result<Identity, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{var}: cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{var}: {} {e}", path.display()))
}

/// The public key of a user's seed, or what else the seed is.
pub(super) fn user_key(seed: &str) -> Result<String, String> {
    let pair = KeyPair::from_seed(seed).map_err(|_| "holds no NKey seed".to_owned())?;
    let public = pair.public_key();
    if !public.starts_with('U') {
        return Err(
            "holds the seed of an operator, account or server, not of a user (SU...)".to_owned(),
        );
    }
    Ok(public)
}

/// Whether `value`, given where a file's path was meant, is a secret itself: a seed, a JWT or
/// a `.creds` file's text.
pub(super) fn is_secret(value: &str) -> bool {
    let value = value.trim();
    KeyPair::from_seed(value).is_ok()
        || value.contains('\n')
        || value.contains("-----BEGIN")
        || (value.starts_with("eyJ") && value.matches('.').count() == 2)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn seed_only(text: &str) -> Result<Identity, String> {
        user_key(text.trim())?;
        Ok(Identity {
            jwt: None,
            seed: text.trim().to_owned(),
        })
    }

    #[test]
    fn a_file_read_again_gives_what_it_holds_now_or_else_what_it_held() {
        let path = std::env::temp_dir().join(format!("pulse-signing-{}", rand::random::<u64>()));
        let (first, second) = (KeyPair::new_user(), KeyPair::new_user());
        let seed = |k: &KeyPair| k.seed().unwrap();
        std::fs::write(&path, seed(&first)).unwrap();
        let file = SigningFile::read("VAR", &path, seed_only).expect("a user seed");
        std::fs::write(&path, seed(&second)).unwrap();
        assert_eq!(file.current().seed, seed(&second));
        // Caught mid-write, then gone: the last good seed stays.
        std::fs::write(&path, "SU").unwrap();
        assert_eq!(file.current().seed, seed(&second));
        let _ = std::fs::remove_file(&path);
        assert_eq!(file.current().seed, seed(&second));
    }

    #[test]
    fn secrets_given_for_a_path_are_told_from_paths() {
        let seed = KeyPair::new_user().seed().unwrap();
        for secret in [
            seed.as_str(),
            "eyJa.eyJb.c",
            "-----BEGIN NATS USER JWT-----",
            "a\nb",
        ] {
            assert!(is_secret(secret), "{secret}");
        }
        for path in ["/run/secrets/pulse.creds", "eyJ.creds", "./nats/seed"] {
            assert!(!is_secret(path), "{path}");
        }
    }
}
