//! Keeping the demo's readings bounded. At the defaults the simulator writes 600 readings a
//! second, about 12 GB a day; a demo left running would fill the disk. Readings of the demo
//! tenants older than `PULSE_SIM_KEEP_READINGS` are deleted a batch at a time, each device's
//! read from its own index range, so no statement holds many row locks or reads live rows, and
//! the devices walked in order, so a pass costs what there is to delete, not the fleet squared.

use std::time::Duration;

use sqlx::PgPool;

/// How often old readings are deleted.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Readings deleted by one statement at most.
const BATCH: i64 = 10_000;

/// Devices whose readings one round deletes: the devices are walked in order, a chunk at a
/// time, so each is looked at once per pass however many devices there are (starting over
/// from the first device for each batch made a pass quadratic in the fleet's size).
const DEVICES_PER_CHUNK: i64 = 1_000;

/// Deletes the readings of `tenants` older than `keep`; returns how many.
pub(crate) async fn prune_readings(
    pool: &PgPool,
    tenants: &[String],
    keep: Duration,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    let mut after = (String::new(), String::new());
    loop {
        let chunk: Vec<(String, String)> = sqlx::query_as(
            "SELECT tenant_id::text, device_id::text FROM devices \
              WHERE tenant_id = ANY($1) AND (tenant_id, device_id) > ($2, $3) \
              ORDER BY tenant_id, device_id LIMIT $4",
        )
        .bind(tenants)
        .bind(&after.0)
        .bind(&after.1)
        .bind(DEVICES_PER_CHUNK)
        .fetch_all(pool)
        .await?;
        let Some(last) = chunk.last().cloned() else {
            return Ok(deleted);
        };
        let (tenant_ids, device_ids): (Vec<String>, Vec<String>) = chunk.into_iter().unzip();
        loop {
            let batch = sqlx::query(
                "DELETE FROM telemetry WHERE ctid = ANY(ARRAY( \
                    SELECT old.ctid FROM UNNEST($1::text[], $2::text[]) AS d(tenant_id, device_id) \
                      CROSS JOIN LATERAL ( \
                            SELECT ctid FROM telemetry t \
                             WHERE t.tenant_id = d.tenant_id AND t.device_id = d.device_id \
                               AND t.ts < statement_timestamp() - make_interval(secs => $3) \
                             LIMIT $4) old \
                     LIMIT $4))",
            )
            .bind(&tenant_ids)
            .bind(&device_ids)
            .bind(keep.as_secs_f64())
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < BATCH as u64 {
                break;
            }
        }
        after = last;
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
