//! PostgreSQL pools of the services: each connection works as the service's own role (see
//! [`crate::roles`]), whatever login `DATABASE_URL` names, which every binary that works on the
//! database takes the same way ([`DatabaseArgs`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Error;

/// The `--database-url` flag (`DATABASE_URL`) of the binaries that work on the database.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string.
    #[arg(
        long = "database-url",
        value_name = "DATABASE_URL",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: String,
}

/// A `DATABASE_URL` that does not name a PostgreSQL database.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
pub struct InvalidDatabaseUrl(String);

impl DatabaseArgs {
    /// Checks the URL; see [`check_url`].
    pub fn validate(&self) -> Result<(), InvalidDatabaseUrl> {
        check_url(&self.url)
    }
}

/// Checks that `url` is a `postgres://` URL PostgreSQL's client can read.
pub fn check_url(url: &str) -> Result<(), InvalidDatabaseUrl> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(InvalidDatabaseUrl(
            "expected postgres://user@host:port/database".into(),
        ));
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| InvalidDatabaseUrl(e.to_string()))
}

/// How long a caller waits for a connection before the query fails, so a database that is
/// down shows as errors (and unreadiness) instead of requests that hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool that connects on first use, so a service starts while the database is still coming
/// up. With `role` (and not empty), every connection first runs `SET ROLE <role>`: the login
/// must be a member of it, and what the connection may read and write is then the role's
/// grants and row-level security policies.
pub fn lazy_pool(database_url: &str, size: u32, role: Option<&str>) -> Result<PgPool, Error> {
    let options = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    let options = match role.filter(|r| !r.is_empty()) {
        None => options,
        Some(role) => {
            let set_role = format!("SET ROLE {}", quote_ident(role));
            options.after_connect(move |conn, _| {
                let set_role = set_role.clone();
                Box::pin(async move {
                    sqlx::query(&set_role).execute(conn).await?;
                    Ok(())
                })
            })
        }
    };
    options
        .connect_lazy(database_url)
        .map_err(Error::InvalidUrl)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(quote_ident("pulse_web"), "\"pulse_web\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn only_postgres_urls_are_valid() {
        let url = |url: &str| DatabaseArgs { url: url.into() }.validate();
        url("postgres://u@h/db").unwrap();
        url("postgresql://u@h:5433/db").unwrap();
        for bad in ["mysql://u@h/db", "", "postgres://u@h:port/db"] {
            let err = url(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("DATABASE_URL is not a valid PostgreSQL URL: "),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_malformed_url_is_refused_at_once() {
        assert!(matches!(
            lazy_pool("not a url", 1, None),
            Err(Error::InvalidUrl(_))
        ));
    }
}
