//! Logins under pressure: how many attempts an address, an email and the pair of both may make,
//! and how much password hashing may run at once.
//!
//! - Every attempt counts, and it counts before its password is hashed, so parallel requests
//!   cannot slip past a limit while their hashes run.
//! - Per pair (email, client address): `PULSE_LOGIN_FAILURES_PER_MINUTE` attempts a minute.
//!   Per client address: four times that (several users may share one, an office NAT).
//!   Per email, from all addresses: ten times that, which stops a distributed guess at one
//!   account; an address that logged in as that email before (on any instance: the database
//!   keeps them, [`crate::login_addresses`]) is exempt, so nobody can lock a user out of an
//!   account by failing its logins from elsewhere. Such a known pair is held only to its
//!   address's limit.
//! - Every instance counts against the same limits: an attempt this instance admits is
//!   counted again in the database ([`crate::shared_limits`]), where all instances count, so
//!   a client spreading its guesses over the instances behind a load balancer gets each limit
//!   once. The instance's own limiters answer first: a flood it refuses costs no query.
//! - Argon2 costs ~19 MiB and tens of milliseconds per hash: at most
//!   `PULSE_LOGIN_CONCURRENCY` run at once; a login that finds none free within a second gets
//!   503 with `Retry-After`, and memory stays bounded whatever the burst. The slot is taken
//!   before the attempt is counted, so a login turned away as busy costs no attempt.
//! - The bookkeeping stays cheap under a flood of distinct addresses: quiet keys are swept
//!   when the limiters have doubled since the last sweep, not on every attempt past a size,
//!   and known pairs past their cap are trimmed by a tenth at a time.
//! - The client address is the connection's peer, or, when the peer is one of
//!   `PULSE_TRUSTED_PROXIES`, the nearest untrusted address of `X-Forwarded-For`; an IPv6
//!   client counts as its /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use parking_lot::Mutex;
use pulse_common::client_addr::{TrustedProxies, subscriber};
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::login_addresses::{self, KNOWN_DAYS};
use crate::shared_limits::{Key, Limit, Rate};

/// How long an address that logged in as an email stays exempt from that email's limit.
const KNOWN_FOR: Duration = Duration::from_secs(KNOWN_DAYS as u64 * 86_400);
/// Most (email, address) pairs remembered as known; the oldest are forgotten first.
const MAX_KNOWN: usize = 100_000;
/// Keyed limiters forget quiet keys once they hold this many.
const RETAIN_ABOVE: usize = 100_000;
/// How long a login waits for a free hashing slot before it gets 503.
const HASH_WAIT: Duration = Duration::from_secs(1);

type Pair = (String, IpAddr);

/// What this instance's limiters made of an attempt that the address's limit admitted.
#[derive(Debug)]
enum Attempt {
    /// Within every limit.
    Counted,
    /// The address logged in as the email on this instance before: held to nothing more.
    Known,
    /// Over the pair's or the email's limit: refused with this unless the database knows the
    /// address for the email.
    UnlessKnown(ApiError),
}

pub struct LoginGuard {
    per_pair: Limit<Pair>,
    per_address: Limit<IpAddr>,
    per_email: Limit<String>,
    known: Mutex<HashMap<Pair, Instant>>,
    /// The limiters' size past which the next attempt sweeps quiet keys: twice what the last
    /// sweep left (at least [`RETAIN_ABOVE`]), so that sweeps stay rare however many keys
    /// are recent.
    sweep_above: AtomicUsize,
    hashing: Arc<Semaphore>,
    trusted: TrustedProxies,
}

impl LoginGuard {
    pub fn new(attempts_per_minute: u32, concurrency: usize, trusted: TrustedProxies) -> Self {
        Self {
            per_pair: Limit::new(Rate::per_minute(attempts_per_minute)),
            per_address: Limit::new(Rate::per_minute(attempts_per_minute.saturating_mul(4))),
            per_email: Limit::new(Rate::per_minute(attempts_per_minute.saturating_mul(10))),
            known: Mutex::new(HashMap::new()),
            sweep_above: AtomicUsize::new(RETAIN_ABOVE),
            hashing: Arc::new(Semaphore::new(concurrency.max(1))),
            trusted,
        }
    }

    /// The client's address: the peer, unless the peer is a trusted proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted.client(peer, headers)
    }

    /// Counts one attempt by `address` as `email`, here and then with every instance, or
    /// refuses it with 429. An address that logged in as the email before (on any instance,
    /// see [`crate::login_addresses`]) is held only to its address's limit.
    pub async fn attempt(
        &self,
        pool: &PgPool,
        email: &str,
        address: IpAddr,
    ) -> Result<(), ApiError> {
        let address = subscriber(address);
        let here = self.attempt_here(email, address)?;
        let shared = Key::LoginAddress(address);
        if let Some(refusal) = self.per_address.refusal_everywhere(pool, shared).await? {
            return Err(refusal);
        }
        let refusal = match here {
            Attempt::Known => return Ok(()),
            Attempt::UnlessKnown(refusal) => Some(refusal),
            Attempt::Counted => {
                let pair = Key::LoginPair(email, address);
                match self.per_pair.refusal_everywhere(pool, pair).await? {
                    Some(refusal) => Some(refusal),
                    None => {
                        let email = Key::LoginEmail(email);
                        self.per_email.refusal_everywhere(pool, email).await?
                    }
                }
            }
        };
        let Some(refusal) = refusal else {
            return Ok(());
        };
        if !login_addresses::is_known(pool, email, address).await? {
            return Err(refusal);
        }
        self.remember(email, address);
        Ok(())
    }

    /// [`LoginGuard::attempt`] as this instance counts it: `Err` only for the address's limit.
    fn attempt_here(&self, email: &str, address: IpAddr) -> Result<Attempt, ApiError> {
        if self.largest_limiter() > self.sweep_above.load(Ordering::Relaxed) {
            self.per_pair.retain_recent();
            self.per_address.retain_recent();
            self.per_email.retain_recent();
            let left = self.largest_limiter();
            self.sweep_above
                .store(RETAIN_ABOVE.max(left.saturating_mul(2)), Ordering::Relaxed);
        }
        let address = subscriber(address);
        let pair = (email.to_owned(), address);
        self.per_address.check_here(&address)?;
        if self.is_known(&pair) {
            return Ok(Attempt::Known);
        }
        if let Err(refusal) = self.per_pair.check_here(&pair) {
            return Ok(Attempt::UnlessKnown(refusal));
        }
        if let Err(refusal) = self.per_email.check_here(&pair.0) {
            return Ok(Attempt::UnlessKnown(refusal));
        }
        Ok(Attempt::Counted)
    }

    fn largest_limiter(&self) -> usize {
        self.per_pair
            .len()
            .max(self.per_address.len())
            .max(self.per_email.len())
    }

    fn is_known(&self, pair: &Pair) -> bool {
        self.known
            .lock()
            .get(pair)
            .is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }

    /// Remembers, on this instance, that `address` logged in as `email` (now, or before as the
    /// database says).
    pub fn remember(&self, email: &str, address: IpAddr) {
        let address = subscriber(address);
        let mut known = self.known.lock();
        if known.len() >= MAX_KNOWN {
            known.retain(|_, at| at.elapsed() < KNOWN_FOR);
            if known.len() >= MAX_KNOWN {
                // The oldest tenth at once: one pass per MAX_KNOWN / 10 logins, not per login.
                let mut times: Vec<Instant> = known.values().copied().collect();
                let cut = MAX_KNOWN / 10;
                let (_, cutoff, _) = times.select_nth_unstable(cut);
                let cutoff = *cutoff;
                known.retain(|_, at| *at > cutoff);
            }
        }
        known.insert((email.to_owned(), address), Instant::now());
    }

    /// A slot to hash one password in, or 503 when none frees up within a second.
    pub async fn hashing_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(HASH_WAIT, self.hashing.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Busy { retry_after: 1 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addresses_of_one_ipv6_64_count_as_one_client() {
        let g = LoginGuard::new(1, 1, TrustedProxies::default());
        // Per address: four attempts a minute, from anywhere in the /64.
        for n in 1..=4 {
            assert!(counted(g.attempt_here(
                &format!("u{n}@x.example"),
                ip(&format!("2001:db8:1:2::{n}"))
            )));
        }
        assert!(
            g.attempt_here("u5@x.example", ip("2001:db8:1:2:ffff::5"))
                .is_err()
        );
        assert!(
            counted(g.attempt_here("u5@x.example", ip("2001:db8:1:3::5"))),
            "another /64"
        );
        // A login from one address of the /64 makes the whole /64 known for that email.
        let g = LoginGuard::new(1, 1, TrustedProxies::default());
        g.remember("v@x.example", ip("2001:db8:9:9::1"));
        for n in 0..11 {
            let _ = g.attempt_here("v@x.example", ip(&format!("203.0.113.{n}")));
        }
        assert!(matches!(
            g.attempt_here("v@x.example", ip("2001:db8:9:9:a:b:c:d")),
            Ok(Attempt::Known)
        ));
        // An IPv4 address written as IPv6 is that IPv4 address.
        assert_eq!(subscriber(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn counted(attempt: Result<Attempt, ApiError>) -> bool {
        matches!(attempt, Ok(Attempt::Counted))
    }

    #[test]
    fn a_known_address_is_not_locked_out_by_attempts_from_elsewhere() {
        let g = LoginGuard::new(1, 1, TrustedProxies::default());
        let victim = ip("198.51.100.1");
        g.remember("v@x.example", victim);
        // Ten attackers (the per-email allowance) and one more.
        for n in 0..11 {
            let _ = g.attempt_here("v@x.example", ip(&format!("203.0.113.{n}")));
        }
        assert!(matches!(
            g.attempt_here("v@x.example", ip("203.0.113.200")),
            Ok(Attempt::UnlessKnown(ApiError::TooManyRequests { .. }))
        ));
        assert!(matches!(
            g.attempt_here("v@x.example", victim),
            Ok(Attempt::Known)
        ));
    }

    #[test]
    fn a_flood_of_distinct_addresses_sweeps_the_limiters_rarely() {
        // One attempt a minute: no key comes back to rest while the test runs.
        let g = LoginGuard::new(1, 1, TrustedProxies::default());
        let address = |n: usize| IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        for n in 0..RETAIN_ABOVE + 2 {
            let _ = g.attempt_here("a@x.example", address(n));
        }
        // Every key is recent: the sweep left them all, and the next one waits for twice as
        // many, instead of sweeping again on each of the following attempts.
        assert!(g.sweep_above.load(Ordering::Relaxed) > 2 * RETAIN_ABOVE);
    }

    #[test]
    fn known_pairs_past_their_cap_lose_the_oldest_tenth() {
        let g = LoginGuard::new(1, 1, TrustedProxies::default());
        let address = |n: usize| IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        for n in 0..MAX_KNOWN {
            g.remember("a@x.example", address(n));
        }
        g.remember("b@x.example", address(0));
        let known = g.known.lock().len();
        assert!(known <= MAX_KNOWN - MAX_KNOWN / 10 + 1, "{known}");
        assert!(!g.is_known(&("a@x.example".to_owned(), address(0))));
        assert!(g.is_known(&("a@x.example".to_owned(), address(MAX_KNOWN - 1))));
        assert!(g.is_known(&("b@x.example".to_owned(), address(0))));
    }

    #[test]
    fn every_attempt_counts_before_any_hash() {
        let g = LoginGuard::new(3, 1, TrustedProxies::default());
        let a = ip("198.51.100.2");
        for _ in 0..3 {
            assert!(counted(g.attempt_here("a@x.example", a)));
        }
        assert!(matches!(
            g.attempt_here("a@x.example", a),
            Ok(Attempt::UnlessKnown(ApiError::TooManyRequests { retry_after })) if retry_after >= 1
        ));
    }

    #[tokio::test]
    async fn hashing_is_bounded() {
        let g = LoginGuard::new(5, 1, TrustedProxies::default());
        let held = g.hashing_slot().await.unwrap();
        assert!(matches!(
            g.hashing_slot().await,
            Err(ApiError::Busy { retry_after: 1 })
        ));
        drop(held);
        assert!(g.hashing_slot().await.is_ok());
    }
}
