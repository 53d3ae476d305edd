//! Scratch databases: each test gets a database of its own on the shared server, named
//! `pulse_t_<label>_<random>`. It is dropped when the test lets go of it, also when the test
//! fails; `make test` drops what a killed run left behind by that name.
//! Empty ([`ScratchDb::create`]) for tests of the migrations themselves, or migrated
//! ([`ScratchDb::migrated`]) exactly as the services migrate theirs, for everything else.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::env::{base_database_url, with_database, with_login};
use crate::unique;

/// A database of its own, dropped (with any session still in it) when this is dropped.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    /// Connected as the server's superuser (the URL's user), up to 4 connections.
    pub pool: PgPool,
    /// Login roles made for this database ([`ScratchDb::login`]), dropped after it.
    pub logins: Vec<String>,
}

impl ScratchDb {
    /// Creates `pulse_t_<label>_<random>` and connects to it.
    pub async fn create(label: &str) -> ScratchDb {
        let name = unique(&format!("pulse_t_{label}")).replace('-', "_");
        let admin = admin().await;
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
        {
            panic!("cannot create the test database {name}: {e}");
        }
        admin.close().await;
        let url = with_database(&base_database_url(), &name);
        let pool = match PgPoolOptions::new().max_connections(4).connect(&url).await {
            Ok(pool) => pool,
            Err(e) => panic!("cannot connect to the test database {name}: {e}"),
        };
        ScratchDb {
            name,
            url,
            pool,
            logins: Vec::new(),
        }
    }

    /// Creates `pulse_t_<label>_<random>` and applies every migration with [`pulse_db::migrate()`].
    pub async fn migrated(label: &str) -> ScratchDb {
        let db = ScratchDb::create(label).await;
        if let Err(e) = pulse_db::migrate(&db.pool).await {
            panic!("cannot migrate the test database {}: {e}", db.name);
        }
        db
    }

    /// Creates a login role `pulse_t_<label>_<random>` with `attributes` (say, `NOINHERIT IN
    /// ROLE pulse_web`) and a password of its own, dropped after this database; returns its name
    /// and this database's URL logged in as it. Roles are the server's, not the database's:
    /// `make test` drops what a killed run left behind by that name.
    pub async fn login(&mut self, label: &str, attributes: &str) -> (String, String) {
        let name = unique(&format!("pulse_t_{label}")).replace('-', "_");
        let password = unique("pw");
        let create = format!("CREATE ROLE {name} LOGIN PASSWORD '{password}' {attributes}");
        if let Err(e) = sqlx::query(&create).execute(&self.pool).await {
            panic!("cannot create the test login {name}: {e}");
        }
        self.logins.push(name.clone());
        let url = with_login(&self.url, &name, &password);
        (name, url)
    }
}

impl ScratchDb {
    /// Each connection to this database whose `application_name` is one of `names`, as its
    /// name and whether it is encrypted (TLS), by name. Panics, saying so, when the server
    /// has TLS off: no connection could be.
    pub async fn connections_encrypted(&self, names: &[&str]) -> Vec<(String, bool)> {
        let ssl: Result<String, _> = sqlx::query_scalar("SHOW ssl").fetch_one(&self.pool).await;
        assert_eq!(
            ssl.as_deref().ok(),
            Some("on"),
            "PostgreSQL must have TLS on (`ssl = on`, as Debian's package sets it up) for this test"
        );
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let seen = sqlx::query_as(
            "SELECT a.application_name::text, s.ssl FROM pg_stat_activity a \
             JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.datname = current_database() AND a.application_name = ANY($1) \
             ORDER BY 1",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await;
        match seen {
            Ok(seen) => seen,
            Err(e) => panic!("cannot read the connections to {}: {e}", self.name),
        }
    }
}

/// A database set up as deploy/README.md sets one up: a superuser made the service roles and a
/// login per service beforehand, and an owner that is no superuser and has no CREATEROLE applied
/// the migrations. Row-level security binds every one of these logins, the owner included;
/// tests that migrate as the server's superuser do not see what that changes.
pub struct Deployed {
    /// The server's superuser on the database: the outside writers that create tenants and
    /// users, which need `BYPASSRLS` or policies of their own.
    pub db: ScratchDb,
    /// The owner's login (migrations).
    pub owner_url: String,
    /// A login that is a member of only `pulse_web` and `pulse_tenant`, without inheriting.
    pub web_url: String,
    /// A login that is a member of only `pulse_poller`, without inheriting.
    pub poller_url: String,
}

impl Deployed {
    /// Creates `pulse_t_<label>_<random>` and its logins, and migrates it as its owner.
    pub async fn create(label: &str) -> Deployed {
        let deployed = Deployed::unmigrated(label).await;
        let as_owner = match PgPoolOptions::new()
            .max_connections(1)
            .connect(&deployed.owner_url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => panic!("cannot log in as the owner of {}: {e}", deployed.db.name),
        };
        if let Err(e) = pulse_db::migrate(&as_owner).await {
            panic!("cannot migrate {} as its owner: {e}", deployed.db.name);
        }
        as_owner.close().await;
        deployed
    }

    /// [`Deployed::create`] without the migrations: an empty database handed to its owner, for
    /// tests that migrate it themselves (as an earlier release did, say).
    pub async fn unmigrated(label: &str) -> Deployed {
        let mut db = ScratchDb::create(label).await;
        for role in [
            pulse_db::roles::TENANT,
            pulse_db::roles::POLLER,
            pulse_db::roles::WEB,
        ] {
            let create = format!(
                "DO $$ BEGIN \
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                     CREATE ROLE {role} NOLOGIN; \
                   END IF; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            );
            if let Err(e) = sqlx::query(&create).execute(&db.pool).await {
                panic!("cannot create the role {role}: {e}");
            }
        }
        let (owner, owner_url) = db.login("owner", "").await;
        let web = format!(
            "NOINHERIT IN ROLE {}, {}",
            pulse_db::roles::WEB,
            pulse_db::roles::TENANT
        );
        let (_, web_url) = db.login("web", &web).await;
        let poller = format!("NOINHERIT IN ROLE {}", pulse_db::roles::POLLER);
        let (_, poller_url) = db.login("poller", &poller).await;
        for sql in [
            format!("ALTER DATABASE {} OWNER TO {owner}", db.name),
            format!("ALTER SCHEMA public OWNER TO {owner}"),
        ] {
            if let Err(e) = sqlx::query(&sql).execute(&db.pool).await {
                panic!("cannot hand {} to its owner: {e}", db.name);
            }
        }
        Deployed {
            db,
            owner_url,
            web_url,
            poller_url,
        }
    }
}

impl Drop for ScratchDb {
    /// `Drop` cannot wait for a future, so the database is dropped from a thread of its own, with
    /// a runtime of its own, and this waits for it: when a test ends, its database is gone. The
    /// sessions of the test's pool, and of anything it started, are ended by the drop.
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let logins = std::mem::take(&mut self.logins);
        let dropped = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(async {
                    drop_database(&name).await;
                    // After the database: a role that owns it cannot be dropped.
                    drop_logins(&logins).await;
                }),
                Err(e) => eprintln!("cannot drop the test database {name}: {e}"),
            }
        });
        let _ = dropped.join();
    }
}

/// Drops `name` (if it exists), ending the sessions still connected to it.
pub async fn drop_database(name: &str) {
    let admin = admin().await;
    // A leftover is dropped by the next `make test`; failing here would hide the real result.
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
}

/// Drops the login roles `names` (those that still exist).
async fn drop_logins(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let admin = admin().await;
    for name in names {
        // As for databases: a leftover is dropped by the next `make test`.
        let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
            .execute(&admin)
            .await;
    }
    admin.close().await;
}

async fn admin() -> PgPool {
    match PgPoolOptions::new()
        .max_connections(1)
        .connect(&base_database_url())
        .await
    {
        Ok(pool) => pool,
        Err(e) => panic!("PostgreSQL must be reachable at DATABASE_URL (run `make test`): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let admin = admin().await;
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&admin)
                .await
                .unwrap();
        admin.close().await;
        found
    }

    #[tokio::test]
    async fn a_scratch_database_is_gone_once_dropped_even_by_a_failing_test() {
        let db = ScratchDb::create("dropped").await;
        let name = db.name.clone();
        assert!(exists(&name).await);
        drop(db);
        assert!(!exists(&name).await, "{name} is still there");

        // A test that panics while it holds its database, with a session still open in it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let failing = tokio::spawn(async move {
            let db = ScratchDb::create("panicked").await;
            let session = db.pool.acquire().await.unwrap();
            tx.send(db.name.clone()).unwrap();
            panic!("the test failed while holding {session:?}");
        });
        let name = rx.await.unwrap();
        assert!(failing.await.unwrap_err().is_panic());
        assert!(!exists(&name).await, "{name} is still there");
    }
}
