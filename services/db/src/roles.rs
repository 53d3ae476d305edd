//! The roles the services work as, created by migrations/20261201000004_service_roles.sql.
//! Their names are part of the deployment contract (`PULSE_POLLER_DB_ROLE`,
//! `PULSE_WEB_DB_ROLE` default to them), so they are spelled once, here.
//!
//! Tenant data is read and written as [`TENANT`] with `app.tenant_id` set, so row-level
//! security — not the caller's SQL — decides which rows exist.

use pulse_proto::TenantId;
use sqlx::{PgPool, Postgres, Transaction};

/// The poller: reads every tenant's data, marks relayed events, writes `pulse_settings`.
pub const POLLER: &str = "pulse_poller";
/// The web service: authenticates, keeps sessions, reads `pulse_settings`; no tenant data.
pub const WEB: &str = "pulse_web";
/// One tenant's rows, chosen by `app.tenant_id`; with it unset, none.
pub const TENANT: &str = "pulse_tenant";

/// Opens a transaction that sees only `tenant`'s rows. Dropping it rolls back.
pub async fn begin_as_tenant(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    as_tenant(pool.begin().await?, tenant).await
}

/// [`begin_as_tenant`], read only, every statement seeing the same snapshot (`REPEATABLE
/// READ`): for an answer read in several statements that must agree with each other (a page of
/// events and the topic's newest `seq`), whatever commits meanwhile.
pub async fn begin_reading_as_tenant(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    as_tenant(tx, tenant).await
}

async fn as_tenant(
    mut tx: Transaction<'static, Postgres>,
    tenant: &TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    sqlx::query("SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)")
        .bind(TENANT)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
