//! Rate limits counted twice: by each instance's own token buckets (governor), which answer
//! first and cost nothing, then in the database (`rate_limits`), where every web instance
//! counts against one limit: behind a load balancer, a client that spreads its requests over N
//! instances gets each limit once, not N times. Login attempts ([`crate::login_guard`]) and
//! published events ([`crate::publish_limit`]) are limited so, and a flood one instance
//! already refuses costs the database nothing.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pulse_proto::TenantId;
use sqlx::PgPool;

use crate::error::ApiError;

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

/// One limit, at one [`Rate`] per key: this instance's token buckets, and the count every
/// instance shares.
pub struct Limit<K: Hash + Eq + Clone> {
    here: DefaultKeyedRateLimiter<K>,
    rate: Rate,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    pub fn new(rate: Rate) -> Self {
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.every)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Self {
            here: RateLimiter::keyed(quota),
            rate,
        }
    }

    /// Takes one request for `key` on this instance, or refuses it with 429 and how long to
    /// wait.
    pub fn check_here(&self, key: &K) -> Result<(), ApiError> {
        self.here.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Takes one request for `shared` (the same key, as the database names it) with every
    /// instance: `Some` refusal when over the limit, nothing counted.
    pub async fn refusal_everywhere(
        &self,
        pool: &PgPool,
        shared: Key<'_>,
    ) -> Result<Option<ApiError>, sqlx::Error> {
        let wait = take(pool, shared, self.rate).await?;
        Ok(wait.map(|retry_after| ApiError::TooManyRequests { retry_after }))
    }

    /// [`Limit::check_here`], then [`Limit::refusal_everywhere`].
    pub async fn check(&self, pool: &PgPool, key: &K, shared: Key<'_>) -> Result<(), ApiError> {
        self.check_here(key)?;
        match self.refusal_everywhere(pool, shared).await? {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Keys this instance holds buckets for.
    pub fn len(&self) -> usize {
        self.here.len()
    }

    pub fn is_empty(&self) -> bool {
        self.here.is_empty()
    }

    /// Forgets the keys whose buckets are full again.
    pub fn retain_recent(&self) {
        self.here.retain_recent();
    }
}

/// Takes one request for `key` at `rate`: `None` when admitted (and counted), else the whole
/// seconds until one would be (nothing counted).
async fn take(pool: &PgPool, key: Key<'_>, rate: Rate) -> Result<Option<u64>, sqlx::Error> {
    let wait: f64 = sqlx::query_scalar("SELECT pulse_take_rate($1, $2, $3)")
        .bind(key.text())
        .bind(rate.every.as_secs_f64())
        .bind(i32::try_from(rate.burst).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await?;
    Ok((wait > 0.0).then(|| wait.ceil().max(1.0) as u64))
}
