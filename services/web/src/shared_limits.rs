//! Rate limits counted in the database (`rate_limits`), so that every web instance counts
//! against one limit: behind a load balancer, a client that spreads its requests over N
//! instances gets each limit once, not N times. Login attempts ([`crate::login_guard`]) and
//! published events ([`crate::publish_limit`]) are counted here after the instance's own
//! limiters admitted them, so a flood one instance already refuses costs the database nothing.

use std::net::IpAddr;
use std::time::Duration;

use pulse_proto::TenantId;
use sqlx::PgPool;

/// What one request is counted against, as the database's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// Login attempts from a client address (an IPv4 address or an IPv6 /64).
    LoginAddress(IpAddr),
    /// Login attempts as an email from one client address.
    LoginPair(&'a str, IpAddr),
    /// Login attempts as an email, from any address.
    LoginEmail(&'a str),
    /// Events a tenant publishes.
    Publish(&'a TenantId),
}

impl Key<'_> {
    fn text(&self) -> String {
        match self {
            Key::LoginAddress(address) => format!("login address {address}"),
            Key::LoginPair(email, address) => format!("login pair {address} {email}"),
            Key::LoginEmail(email) => format!("login email {email}"),
            Key::Publish(tenant) => format!("publish {tenant}"),
        }
    }
}

/// How often a key is allowed a request: one every `every`, and `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub every: Duration,
    pub burst: u32,
}

impl Rate {
    /// `n` a minute, all of them at once if need be.
    pub fn per_minute(n: u32) -> Rate {
        Rate {
            every: Duration::from_secs(60) / n.max(1),
            burst: n.max(1),
        }
    }

    /// `n` a second, and `burst` at once.
    pub fn per_second(n: u32, burst: u32) -> Rate {
        Rate {
            every: Duration::from_secs(1) / n.max(1),
            burst: burst.max(1),
        }
    }
}

/// Takes one request for `key` at `rate`: `None` when admitted (and counted), else the whole
/// seconds until one would be (nothing counted).
pub async fn take(pool: &PgPool, key: Key<'_>, rate: Rate) -> Result<Option<u64>, sqlx::Error> {
    let wait: f64 = sqlx::query_scalar("SELECT pulse_take_rate($1, $2, $3)")
        .bind(key.text())
        .bind(rate.every.as_secs_f64())
        .bind(i32::try_from(rate.burst).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await?;
    Ok((wait > 0.0).then(|| wait.ceil().max(1.0) as u64))
}
