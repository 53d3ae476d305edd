//! Passes changes to users (deleted, role changed, signed out) on to the gateways, which close
//! those users' connections within moments instead of at their tickets' expiry.
//!
//! The changes are read from `user_changes`, where the database's own functions queue them in
//! the changing transaction (migration `20261207000006`); a `user:…` notification only says to
//! read it. Any role that may connect can send a notification, so one is never taken for the
//! change itself. The queue is read at every hint, after the LISTEN connection came back (the
//! hints of the gap were lost) and at least every [`LOOK_EVERY`]. Changes go out in the order
//! they were made and are removed once NATS has taken them; a change NATS did not take is sent
//! again, after a wait growing from 0.2 to 5 s.
//!
//! Plain NATS messages on `pulse.v1.<tenant_id>.users`: a gateway that misses one (it was
//! disconnected) still ends the connection when the ticket expires, and the web service refuses
//! a fresh ticket at once. For the same reason a change queued longer than [`STALE_AFTER`] ago
//! (no poller was active meanwhile) is removed unsent: its users' tickets from before it have
//! expired, and sending it would close connections made since on fresh ones.

use std::time::Duration;

use pulse_common::backoff::Backoff;
use pulse_proto::subject::users_subject;
use pulse_proto::{TenantId, UserChange, UserChanged};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::changes::ChangeFeed;

/// Longest time between two reads of the queue, whatever the notifications say.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Age past which a queued change is removed unsent: well past the longest ticket (60 s).
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Most changes read and sent at once.
const PER_READ: i64 = 500;

/// One row of `user_changes`.
#[derive(sqlx::FromRow)]
struct Queued {
    id: i64,
    tenant_id: String,
    user_id: i64,
    change: String,
    signouts: Option<i64>,
}

/// Forwards user changes until `stop` is cancelled.
pub async fn forward(
    feed: ChangeFeed,
    pool: PgPool,
    nats: async_nats::Client,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let retry_in = match send_queued(&pool, &nats).await {
            Ok(()) => {
                backoff.reset();
                None
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay,
                               "cannot pass user changes on to the gateways");
                Some(delay)
            }
        };
        // After a failure, the wait is not cut short by the next hint.
        tokio::select! {
            () = stop.cancelled() => return,
            () = feed.users_changed(), if retry_in.is_none() => {}
            () = tokio::time::sleep(retry_in.unwrap_or(LOOK_EVERY)) => {}
        }
    }
}

/// Sends every queued change, oldest first, removing each batch once NATS took it.
async fn send_queued(pool: &PgPool, nats: &async_nats::Client) -> anyhow::Result<()> {
    let stale = sqlx::query(
        "DELETE FROM user_changes WHERE changed_at < statement_timestamp() - make_interval(secs => $1)",
    )
    .bind(STALE_AFTER.as_secs_f64())
    .execute(pool)
    .await?;
    if stale.rows_affected() > 0 {
        tracing::warn!(
            removed = stale.rows_affected(),
            "user changes queued while no poller was active, too old to send, removed"
        );
    }
    loop {
        let queued: Vec<Queued> = sqlx::query_as(
            "SELECT id, tenant_id, user_id, change, signouts FROM user_changes ORDER BY id LIMIT $1",
        )
        .bind(PER_READ)
        .fetch_all(pool)
        .await?;
        if queued.is_empty() {
            return Ok(());
        }
        let full = queued.len() as i64 == PER_READ;
        // Exactly these: a change numbered below them may commit after this read (numbers are
        // drawn before commit), and is sent at the next.
        let sent: Vec<i64> = queued.iter().map(|q| q.id).collect();
        for row in queued {
            let span =
                tracing::info_span!("user_change", tenant = %row.tenant_id, user = row.user_id);
            publish(nats, row).instrument(span).await?;
        }
        // Taken by the server before removed: one lost with the connection is sent again.
        nats.flush().await?;
        sqlx::query("DELETE FROM user_changes WHERE id = ANY($1)")
            .bind(&sent)
            .execute(pool)
            .await?;
        if !full {
            return Ok(());
        }
    }
}

/// Sends one queued change to the gateways; one the contract cannot carry is logged and left.
async fn publish(nats: &async_nats::Client, row: Queued) -> anyhow::Result<()> {
    let Some(change) = user_changed(row) else {
        tracing::error!("a queued user change outside the contract; not sent");
        return Ok(());
    };
    let payload = serde_json::to_vec(&change)?;
    nats.publish(users_subject(&change.tenant_id), payload.into())
        .await?;
    tracing::info!(change = ?change.change, "user changed; gateways close its connections");
    Ok(())
}

/// The message for a queued change; `None` for a tenant id or change outside the contract.
fn user_changed(row: Queued) -> Option<UserChanged> {
    let change = match row.change.as_str() {
        "deleted" => UserChange::Deleted,
        "role" => UserChange::Role,
        "signed_out" => UserChange::SignedOut,
        _ => return None,
    };
    Some(UserChanged {
        kind: Default::default(),
        tenant_id: TenantId::parse(row.tenant_id).ok()?,
        user_id: row.user_id.to_string(),
        change,
        signouts: row.signouts.and_then(|n| u64::try_from(n).ok()),
    })
}
