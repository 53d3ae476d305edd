//! Where each user logged in from, in the database (`login_addresses`), so that every web
//! instance exempts those addresses from the email's login limit, not only the instance that
//! answered the login, and not only until it restarts. An address is an IPv4 address or an
//! IPv6 /64 ([`subscriber`]: counted per address, a user would lose the exemption every day
//! as privacy extensions change it); one is known for [`KNOWN_DAYS`] after its
//! last login.

use std::net::IpAddr;

use pulse_common::client_addr::subscriber;
use sqlx::PgPool;

/// How long, in days, an address stays known after a login from it.
pub const KNOWN_DAYS: i32 = 30;

/// Whether `address` logged in as `email` within the last [`KNOWN_DAYS`].
pub async fn is_known(pool: &PgPool, email: &str, address: IpAddr) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_addresses a JOIN users u USING (user_id) \
          WHERE u.email = $1 AND a.address = $2 \
            AND a.last_login > now() - make_interval(days => $3))",
    )
    .bind(email)
    .bind(subscriber(address).to_string())
    .bind(KNOWN_DAYS)
    .fetch_one(pool)
    .await
}

/// Records a login of `user_id` from `address`, and forgets the user's addresses that have
/// not logged in for [`KNOWN_DAYS`].
pub async fn remember(pool: &PgPool, user_id: i64, address: IpAddr) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH forgotten AS (DELETE FROM login_addresses WHERE user_id = $1 \
                             AND last_login < now() - make_interval(days => $3)) \
         INSERT INTO login_addresses (user_id, address) VALUES ($1, $2) \
         ON CONFLICT (user_id, address) DO UPDATE SET last_login = now()",
    )
    .bind(user_id)
    .bind(subscriber(address).to_string())
    .bind(KNOWN_DAYS)
    .execute(pool)
    .await?;
    Ok(())
}
