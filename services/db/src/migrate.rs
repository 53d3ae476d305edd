//! The schema: the migrations in the repository's `migrations/` folder, compiled into every
//! binary that can apply them, so a binary and the schema it expects are always the same
//! release.
//!
//! Concurrent runs (two initContainers starting at once) are safe: sqlx takes a PostgreSQL
//! advisory lock for the duration, and a migration already applied is skipped.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::Error;

/// Every migration of the repository, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Applies the migrations not applied yet; idempotent.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await.map_err(Error::Migrate)
}
