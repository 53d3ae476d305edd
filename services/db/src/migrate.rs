//! The schema: the migrations in the repository's `migrations/` folder, compiled into every
//! binary that can apply them, so a binary and the schema it expects are always the same
//! release.
//!
//! Concurrent runs (two initContainers starting at once) are safe: sqlx takes a PostgreSQL
//! advisory lock for the duration, and a migration already applied is skipped.
//!
//! sqlx refuses to run when an applied migration's text changed since (its checksum). A few
//! were reworded after release in a way that changes nothing on a database that applied them;
//! [`REWORDED`] lists the wording each was applied with, and such a database is moved onto the
//! new wording before the run. Any other change is refused, as sqlx would.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use crate::Error;

/// Every migration of the repository, in order.
///
/// A database that holds migrations this binary does not know, a later release's, is left as
/// it is, not refused: a release rolled back (or a pod of the previous release restarted
/// during a rollout) runs its `migrate` step against the schema the newer one left, which
/// migrations are written to keep working for the release before (deploy/README.md). An
/// applied migration whose text changed is still refused.
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../../migrations")
};

/// Migrations reworded after release: their version, and the checksum (SHA-384 of the text,
/// hex) of the wording a database may have applied.
///
/// The first two create a role only when it does not exist yet: `CREATE ROLE` fails without
/// CREATEROLE even for a role that exists, so an owner without it (roles created beforehand by a
/// superuser, as deploy/README.md sets up) could not apply them. On a database that applied
/// them, the roles exist, and the new wording would have done the same.
///
/// The third forces row-level security on `telemetry_out_of_range` after moving the readings
/// out of range into it, not before: forced first, it refused the insert of an owner that is
/// no superuser, on a database holding such readings. Where it was applied, the table ends
/// the same.
pub const REWORDED: &[(i64, &str)] = &[
    (
        20261122000001,
        "890879a9248520d44e4097ee20a5c8a8229f411a5ade5ff8bb5c9939c3a740aa87bb5f021ab8b9a6a2e9433d49831529",
    ),
    (
        20261201000004,
        "aaf3c81dc9d3ce6f8496493f2b3593a2ee55346d10e2763ebee954ccc5a51ba070f0967fba571cfff17e4e8b301d9437",
    ),
    (
        20261204000003,
        "bc7a9ed02975ff0b629a47f70838a3220ec3cdc4fa8a27362e29ab842eb9d641721c77602c5f7dd580a59ffb426443f5",
    ),
];

/// Applies the migrations not applied yet; idempotent.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    adopt_rewordings(pool)
        .await
        .map_err(|e| Error::Migrate(MigrateError::Execute(e)))?;
    MIGRATOR.run(pool).await.map_err(Error::Migrate)
}

/// Moves each migration of [`REWORDED`] applied with its old wording onto its current one.
async fn adopt_rewordings(pool: &PgPool) -> Result<(), sqlx::Error> {
    let migrated: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(pool)
            .await?;
    if migrated.is_none() {
        return Ok(());
    }
    for (version, old) in REWORDED {
        let Some(current) = MIGRATOR.iter().find(|m| m.version == *version) else {
            continue;
        };
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 \
              WHERE version = $2 AND checksum = decode($3, 'hex')",
        )
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(old)
        .execute(pool)
        .await?;
    }
    Ok(())
}
