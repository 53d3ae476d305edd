//! NKey authentication towards NATS: the service proves it holds a user's private seed by
//! signing the server's challenge, and no secret crosses the wire (unlike a password in
//! `NATS_URL`). The server lists the user by its public key (`nkey: U...` in its
//! `authorization` users).
//!
//! The seed file is read when the configuration is parsed: a missing file, or one that holds
//! no user seed, stops the service at start with the variable named. It is read again at every
//! connect ([`super::signing`]).

use super::signing::{self, Identity, SigningFile};

/// The variable that names the seed file.
pub const NKEY_FILE_VAR: &str = "PULSE_NATS_NKEY_FILE";

/// A user's NKey seed (`SU...`), from its file; `Debug` shows nothing of it.
#[derive(Clone, Debug)]
pub struct NkeySeed(pub(super) SigningFile);

fn parse(text: &str) -> Result<Identity, String> {
    let seed = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    signing::user_key(seed)?;
    Ok(Identity {
        jwt: None,
        seed: seed.to_owned(),
    })
}

/// The check of `PULSE_NATS_NKEY_FILE`: the seed in the file `path` names, its first line that
/// is not blank (`nk -gen user -pubout` and `nsc generate nkey --user` write the public key on
/// the next). A seed given in place of its file is refused without being repeated.
pub fn seed_file(path: &str) -> Result<NkeySeed, String> {
    SigningFile::checked(NKEY_FILE_VAR, path, "the seed", parse).map(NkeySeed)
}
