//! NKey authentication towards NATS: the service proves it holds a user's private seed by
//! signing the server's challenge, and no secret crosses the wire (unlike a password in
//! `NATS_URL`). The server lists the user by its public key (`nkey: U...` in its
//! `authorization` users).
//!
//! The seed file is read when the configuration is parsed: a missing file, or one that holds
//! no user seed, stops the service at start with the variable named. The seed is kept out of
//! `Debug` output.

use std::path::Path;

/// The variable that names the seed file.
pub const NKEY_FILE_VAR: &str = "PULSE_NATS_NKEY_FILE";

/// A user's NKey seed (`SU...`), read from its file.
#[derive(Clone, PartialEq, Eq)]
pub struct NkeySeed(String);

impl NkeySeed {
    /// Reads and checks the seed in `path`: its first line that is not blank (`nk -gen user
    /// -pubout` and `nsc generate nkey --user` write the public key on the next).
    pub fn read(path: &Path) -> Result<NkeySeed, String> {
        let text = super::read_file(NKEY_FILE_VAR, path)?;
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let pair = nkeys::KeyPair::from_seed(seed)
            .map_err(|_| format!("{NKEY_FILE_VAR}: {} holds no NKey seed", path.display()))?;
        if !pair.public_key().starts_with('U') {
            return Err(format!(
                "{NKEY_FILE_VAR}: {} holds the seed of an operator, account or server, not of a user (SU...)",
                path.display()
            ));
        }
        Ok(NkeySeed(seed.to_owned()))
    }

    /// The seed, for the client.
    pub(super) fn expose(&self) -> String {
        self.0.clone()
    }
}

impl std::fmt::Debug for NkeySeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NkeySeed(***)")
    }
}

/// The check of `PULSE_NATS_NKEY_FILE`: the file's seed. A seed given in place of its file is
/// refused without being repeated.
pub fn seed_file(path: &str) -> Result<NkeySeed, String> {
    if nkeys::KeyPair::from_seed(path.trim()).is_ok() {
        return Err(format!(
            "{NKEY_FILE_VAR} must name the file that holds the seed, not hold the seed itself"
        ));
    }
    NkeySeed::read(Path::new(path))
}
