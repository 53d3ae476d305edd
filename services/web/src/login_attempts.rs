//! Login attempts counted in the database (`login_attempts`), so that every web instance
//! counts against one limit: behind a load balancer, a client that spreads its guesses over N
//! instances gets each limit once, not N times. [`crate::login_guard`] decides which keys an
//! attempt counts against; each instance's own limiters stand in front, so a flood one
//! instance already refuses costs the database nothing.

use std::net::IpAddr;

use sqlx::PgPool;

/// What one attempt is counted against, as the database's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// A client address (an IPv4 address or an IPv6 /64).
    Address(IpAddr),
    /// An email from one client address.
    Pair(&'a str, IpAddr),
    /// An email, from any address.
    Email(&'a str),
}

impl Key<'_> {
    fn text(&self) -> String {
        match self {
            Key::Address(address) => format!("address {address}"),
            Key::Pair(email, address) => format!("pair {address} {email}"),
            Key::Email(email) => format!("email {email}"),
        }
    }
}

/// Takes one of `per_minute` attempts for `key`: `None` when admitted (and counted), else the
/// whole seconds until one would be (nothing counted).
pub async fn take(
    pool: &PgPool,
    key: Key<'_>,
    per_minute: u32,
) -> Result<Option<u64>, sqlx::Error> {
    let wait: f64 = sqlx::query_scalar("SELECT pulse_take_login_attempt($1, $2)")
        .bind(key.text())
        .bind(i32::try_from(per_minute).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await?;
    Ok((wait > 0.0).then(|| wait.ceil().max(1.0) as u64))
}
