//! Scratch databases: each test gets a database of its own on the shared server, named
//! `pulse_t_<label>_<random>` so that `make test` can drop what a crashed run left behind.
//! Empty ([`ScratchDb::create`]) for tests of the migrations themselves, or migrated
//! ([`ScratchDb::migrated`]) exactly as the services migrate theirs, for everything else.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::env::{base_database_url, with_database};
use crate::unique;

/// An empty database of its own; [`ScratchDb::drop_now`] removes it.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    /// Connected as the server's superuser (the URL's user), up to 4 connections.
    pub pool: PgPool,
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
        ScratchDb { name, url, pool }
    }

    /// Creates `pulse_t_<label>_<random>` and applies every migration with [`pulse_db::migrate()`].
    pub async fn migrated(label: &str) -> ScratchDb {
        let db = ScratchDb::create(label).await;
        if let Err(e) = pulse_db::migrate(&db.pool).await {
            panic!("cannot migrate the test database {}: {e}", db.name);
        }
        db
    }

    /// Closes the pool and drops the database, ending any other session still in it.
    pub async fn drop_now(self) {
        self.pool.close().await;
        drop_database(&self.name).await;
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
