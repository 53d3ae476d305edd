//! Passes changes to users (deleted, role changed, signed out, one session ended) on to the
//! gateways, which close those users' connections (a session's, for one session) within
//! moments instead of at their tickets' expiry.
//!
//! The changes are read from `user_changes`, where the database's own functions queue them in
//! the changing transaction (migration `20261207000006`); a `user:…` notification only says to
//! read it. Any role that may connect can send a notification, so one is never taken for the
//! change itself, and a flood of them costs one read per [`LEAST_GAP`]. The queue is read at a
//! hint, after the LISTEN connection came back (the hints of the gap were lost) and at least
//! every [`LOOK_EVERY`].
//!
//! A batch is taken off the queue in a transaction that commits only once NATS answered after
//! the batch's messages (so it had them), within [`CONFIRM_WITHIN`]; otherwise the batch stays
//! queued and is sent again after a wait growing from 0.2 to 5 s. Two pollers briefly active
//! at once (a failover) do not both send a batch: the second waits for the first's rows.
//!
//! Plain NATS messages on `pulse.v1.<tenant_id>.users`: a gateway that misses one (it was
//! disconnected) still ends the connection when the ticket expires, and the web service's next
//! ticket carries the change (a new role; none for a user deleted or a session ended). A change
//! queued long ago (no poller was active meanwhile) is dropped unsent once sending it would do
//! harm (a role change, an uncounted sign-out, judged by a gateway as of its arrival) or no
//! good (a session's end): [`window`].

use std::time::Duration;

use futures::TryStreamExt as _;
use pulse_common::backoff::Backoff;
use pulse_proto::subject::{STATE_STREAM, users_subject};
use pulse_proto::{TenantId, UserChange, UserChanged};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::changes::ChangeFeed;

/// Longest time between two reads of the queue, whatever the notifications say.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Shortest time between two reads of the queue: hints coming meanwhile are read together.
pub const LEAST_GAP: Duration = Duration::from_millis(50);

/// How long NATS has to answer after a batch.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// Most changes taken off the queue at once.
const PER_BATCH: i64 = 500;

/// One row of `user_changes`, with its age in seconds.
#[derive(sqlx::FromRow)]
struct Queued {
    id: i64,
    tenant_id: String,
    user_id: i64,
    change: String,
    signouts: Option<i64>,
    session: Option<String>,
    age: f64,
}

/// How long after it was made a change is still worth sending. A role change, or a new
/// password's uncounted sign-out, closes the user's connections whatever tickets they hold (a
/// gateway refuses those issued up to 5 s after the change's arrival): sent later than the
/// longest ticket lives (60 s, and a margin), it would close connections made since on fresh
/// tickets, while the ones it was meant for have ended at their tickets' expiry. A deletion, or
/// a counted sign-out, is judged by what it names (the user gone, the count of sign-outs), and
/// is sent for as long as gateways remember one: a day. A session's end matters only while
/// the session's tickets live.
pub fn window(change: UserChange, counted: bool) -> Duration {
    match (change, counted) {
        (UserChange::Deleted, _) | (UserChange::SignedOut, true) => Duration::from_secs(86_400),
        _ => Duration::from_secs(120),
    }
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
        let retry_in = match send_queued(&pool, &nats, &stop).await {
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
        if let Some(delay) = retry_in {
            // Not cut short by the next hint.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = feed.users_changed() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LEAST_GAP) => {}
        }
    }
}

/// Sends every queued change, oldest first, a batch at a time.
async fn send_queued(
    pool: &PgPool,
    nats: &async_nats::Client,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    while !stop.is_cancelled() {
        if !send_batch(pool, nats).await? {
            break;
        }
    }
    Ok(())
}

/// Takes up to [`PER_BATCH`] changes off the queue, sends those still worth sending, and
/// commits once NATS answered after them. Returns whether the batch was full (more may wait).
async fn send_batch(pool: &PgPool, nats: &async_nats::Client) -> anyhow::Result<bool> {
    // Not handed to a client that would only buffer them, to go out whenever NATS is back.
    if nats.connection_state() != async_nats::connection::State::Connected {
        anyhow::bail!("NATS is not connected");
    }
    let mut tx = pool.begin().await?;
    // Deleting locks the rows: a second poller's batch waits for this one's, then finds them
    // gone. Rolled back (an error, NATS not answering), they are queued again.
    let mut batch: Vec<Queued> = sqlx::query_as(
        "DELETE FROM user_changes WHERE id IN \
             (SELECT id FROM user_changes ORDER BY id LIMIT $1) \
         RETURNING id, tenant_id, user_id, change, signouts, session, \
                   extract(epoch FROM statement_timestamp() - changed_at)::float8 AS age",
    )
    .bind(PER_BATCH)
    .fetch(&mut *tx)
    .try_collect()
    .await?;
    if batch.is_empty() {
        return Ok(false);
    }
    let full = batch.len() as i64 == PER_BATCH;
    batch.sort_unstable_by_key(|q| q.id);
    let mut stale = 0;
    for row in batch {
        let age = Duration::from_secs_f64(row.age.max(0.0));
        let span = tracing::info_span!("user_change", tenant = %row.tenant_id, user = row.user_id);
        let Some(change) = user_changed(row) else {
            tracing::error!(parent: &span, "a queued user change outside the contract; not sent");
            continue;
        };
        if age > window(change.change, change.signouts.is_some()) {
            stale += 1;
            continue;
        }
        publish(nats, &change).instrument(span).await?;
    }
    if stale > 0 {
        tracing::warn!(
            stale,
            "user changes queued while no poller was active, too old to send, dropped"
        );
    }
    confirm(nats).await?;
    tx.commit().await?;
    Ok(full)
}

/// Sends one change to the gateways.
async fn publish(nats: &async_nats::Client, change: &UserChanged) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(change)?;
    nats.publish(users_subject(&change.tenant_id), payload.into())
        .await?;
    tracing::info!(change = ?change.change, "user changed; gateways close its connections");
    Ok(())
}

/// Resolves once NATS answered a request sent after everything published before: the server
/// reads a connection in order, so it had those. Any answer counts (a JetStream API's, or
/// "no responders"); none within [`CONFIRM_WITHIN`] is an error. Asked of an API the poller
/// may use in every deployment (`STREAM.INFO` of its own stream).
async fn confirm(nats: &async_nats::Client) -> anyhow::Result<()> {
    let subject = format!("$JS.API.STREAM.INFO.{STATE_STREAM}");
    match tokio::time::timeout(CONFIRM_WITHIN, nats.request(subject, Default::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "NATS did not confirm the user changes: {e}"
        )),
        Err(_) => anyhow::bail!("NATS did not confirm the user changes within {CONFIRM_WITHIN:?}"),
    }
}

/// The message for a queued change; `None` for a tenant id or change outside the contract.
fn user_changed(row: Queued) -> Option<UserChanged> {
    let change = match row.change.as_str() {
        "deleted" => UserChange::Deleted,
        "role" => UserChange::Role,
        "signed_out" => UserChange::SignedOut,
        "session_ended" => UserChange::SessionEnded,
        _ => return None,
    };
    let session = row.session.filter(|_| change == UserChange::SessionEnded);
    if change == UserChange::SessionEnded && session.is_none() {
        return None;
    }
    Some(UserChanged {
        kind: Default::default(),
        tenant_id: TenantId::parse(row.tenant_id).ok()?,
        user_id: row.user_id.to_string(),
        change,
        // Only a sign-out is counted (the table's check allows no negative count).
        signouts: row
            .signouts
            .filter(|_| change == UserChange::SignedOut)
            .and_then(|n| u64::try_from(n).ok()),
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, change: &str, signouts: Option<i64>) -> Queued {
        Queued {
            id: 1,
            tenant_id: tenant.into(),
            user_id: 42,
            change: change.into(),
            signouts,
            session: None,
            age: 0.0,
        }
    }

    #[test]
    fn a_queued_row_becomes_the_contracts_message_or_nothing() {
        let deleted = user_changed(row("acme", "deleted", None)).unwrap();
        assert_eq!(
            serde_json::to_value(&deleted).unwrap(),
            serde_json::json!({"type": "user_changed", "tenant_id": "acme", "user_id": "42", "change": "deleted"})
        );
        let counted = user_changed(row("acme", "signed_out", Some(3))).unwrap();
        assert_eq!(
            (counted.change, counted.signouts),
            (UserChange::SignedOut, Some(3))
        );
        assert_eq!(
            user_changed(row("acme", "role", Some(3))).unwrap().signouts,
            None
        );
        assert!(user_changed(row("a.b", "deleted", None)).is_none());
        assert!(user_changed(row("acme", "gone", None)).is_none());
        // A session's end names the session, or is nothing.
        assert!(user_changed(row("acme", "session_ended", None)).is_none());
        let ended = Queued {
            session: Some("00ff00ff00ff00ff".into()),
            ..row("acme", "session_ended", None)
        };
        let ended = user_changed(ended).unwrap();
        assert_eq!(
            (ended.change, ended.session.as_deref()),
            (UserChange::SessionEnded, Some("00ff00ff00ff00ff"))
        );
    }

    #[test]
    fn only_changes_judged_by_what_they_name_are_sent_late() {
        let day = Duration::from_secs(86_400);
        assert_eq!(window(UserChange::Deleted, false), day);
        assert_eq!(window(UserChange::SignedOut, true), day);
        assert!(window(UserChange::SessionEnded, false) < Duration::from_secs(300));
        assert!(window(UserChange::Role, false) < Duration::from_secs(300));
        assert!(window(UserChange::SignedOut, false) < Duration::from_secs(300));
        // Longer than any ticket of the web service lives.
        assert!(window(UserChange::Role, false) > Duration::from_secs(60));
    }
}
