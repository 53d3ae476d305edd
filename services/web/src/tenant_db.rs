//! Database access on behalf of a tenant: every tenant request runs in a transaction as role
//! `pulse_tenant` with `app.tenant_id` set, so row-level security — not the handler's SQL —
//! decides which rows exist.

use pulse_proto::TenantId;
use sqlx::{PgPool, Postgres, Transaction};

/// Opens a transaction that sees only `tenant`'s rows. Dropping it rolls back.
pub async fn begin(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('role', 'pulse_tenant', true), set_config('app.tenant_id', $1, true)",
    )
    .bind(tenant.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}
