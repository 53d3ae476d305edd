//! What is done to the events outbox from outside the relay: its events marked to be relayed
//! again, when the events stream they were relayed into was lost. Written once the loss is
//! found, in the database, so that a poller that steps down before the relay got to it leaves
//! the work to its successor rather than losing it.

use anyhow::Context as _;
use sqlx::PgPool;

/// Marks every event the outbox still holds (those within the retention) unrelayed, so that
/// the relay sends them again: into an events stream created again after it was lost, which
/// then holds the history it held. Run while no relay pass is under way (`streams::PassGate`),
/// so that none acknowledged by the lost stream is marked after it.
pub async fn relay_again(pool: &PgPool) -> anyhow::Result<()> {
    let marked = sqlx::query("UPDATE events SET relayed_at = NULL WHERE relayed_at IS NOT NULL")
        .execute(pool)
        .await
        .context("mark the outbox's events to relay again")?
        .rows_affected();
    tracing::warn!(
        events = marked,
        "the events stream was lost; relaying the outbox's events again"
    );
    Ok(())
}
