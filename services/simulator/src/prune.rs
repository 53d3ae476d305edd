//! Keeping the demo's readings bounded. At the defaults the simulator writes 600 readings a
//! second, about 12 GB a day; a demo left running would fill the disk. Readings of the demo
//! tenants older than `PULSE_SIM_KEEP_READINGS` are deleted a batch at a time, each device's
//! read from its own index range, so no statement holds many row locks or reads live rows.

use std::time::Duration;

use sqlx::PgPool;

/// How often old readings are deleted.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Readings deleted by one statement at most.
const BATCH: i64 = 10_000;

/// Deletes the readings of `tenants` older than `keep`; returns how many.
pub(crate) async fn prune_readings(
    pool: &PgPool,
    tenants: &[String],
    keep: Duration,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(
            "DELETE FROM telemetry WHERE ctid = ANY(ARRAY( \
                SELECT old.ctid FROM devices d \
                  CROSS JOIN LATERAL ( \
                        SELECT ctid FROM telemetry t \
                         WHERE t.tenant_id = d.tenant_id AND t.device_id = d.device_id \
                           AND t.ts < statement_timestamp() - make_interval(secs => $2) \
                         LIMIT $3) old \
                 WHERE d.tenant_id = ANY($1) \
                 LIMIT $3))",
        )
        .bind(tenants)
        .bind(keep.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        if batch < BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Deletes old readings now and every [`PRUNE_EVERY`] until `stop` fires (or is dropped). Runs
/// beside the ticks, so a long first pass over a backlog never holds readings back.
pub(crate) async fn keep_pruning(
    pool: PgPool,
    tenants: Vec<String>,
    keep: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        tokio::select! {
            _ = &mut stop => return,
            pruned = prune_readings(&pool, &tenants, keep) => match pruned {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, keep = ?keep, "deleted old demo readings"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old demo readings; trying again in a minute"),
            },
        }
    }
}
