//! PostgreSQL pools of the services: each connection works as the service's own role (see
//! [`crate::roles`]), whatever login `DATABASE_URL` names.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::Error;

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
    fn a_malformed_url_is_refused_at_once() {
        assert!(matches!(
            lazy_pool("not a url", 1, None),
            Err(Error::InvalidUrl(_))
        ));
    }
}
