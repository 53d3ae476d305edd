//! Active/standby: only the poller holding a PostgreSQL advisory lock publishes.
//!
//! The lock lives on a dedicated connection. When the active process dies, PostgreSQL drops
//! the connection and the lock with it, and a standby's next attempt (every
//! `PULSE_STANDBY_RETRY_MS`) succeeds. The holder always has a check in flight on that
//! connection (one that waits a second on the server), so when the server ends the connection
//! (terminated, restarted), the error it sends first reaches the holder as the lock is freed,
//! and the holder stops publishing while a standby still has to ask for the lock. When the
//! connection goes silent instead, the check times out and the holder steps down long before
//! the server gives up on the connection and frees the lock.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// Advisory lock key: the bytes of "pulse-po" as a big-endian integer. Advisory locks are
/// scoped to a database, so pollers of different databases never contend.
pub const LOCK_KEY: i64 = 0x7075_6c73_652d_706f;

/// How often the holder verifies it still holds the lock; each check waits this long on the
/// server first, so the connection is never idle on the holder's side.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How much longer than `CHECK_EVERY` a check may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Proof of being the active poller; dropping it releases the lock.
pub struct Leadership {
    conn: PgConnection,
}

/// Tries once to become active. `Ok(None)`: another poller holds the lock.
pub async fn try_acquire(database_url: &str) -> Result<Option<Leadership>, sqlx::Error> {
    let mut conn = PgConnection::connect(database_url).await?;
    sqlx::query("SET application_name = 'pulse-poller-leader'")
        .execute(&mut conn)
        .await?;
    // The server drops this connection, and the lock with it, within ~11 s of losing the
    // poller (10 s after a check's answer, sent within CHECK_EVERY, went unacknowledged; or
    // after 5 s of silence and keepalives every 2 s unanswered): long after the poller itself
    // stepped down (its own check times out within CHECK_EVERY + CHECK_TIMEOUT), so a new
    // leader never starts while the old one still publishes, and a partition does not hold
    // the lock for the operating system's default of hours. A poller that closed the
    // connection (or died) during a check is noticed within 100 ms rather than when the
    // check's wait ends, and a statement timeout set for the database does not cut the wait.
    for setting in [
        "SET tcp_keepalives_idle = 5",
        "SET tcp_keepalives_interval = 2",
        "SET tcp_keepalives_count = 3",
        "SET tcp_user_timeout = 10000",
        "SET client_connection_check_interval = 100",
        "SET statement_timeout = 0",
    ] {
        if let Err(e) = sqlx::query(setting).execute(&mut conn).await {
            // Not every server (or connection over a Unix socket) accepts them.
            tracing::debug!(%setting, error = %e, "lock connection setting refused");
        }
    }
    let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if acquired {
        Ok(Some(Leadership { conn }))
    } else {
        // Closing politely; the lock was never ours.
        let _ = conn.close().await;
        Ok(None)
    }
}

impl Leadership {
    /// Resolves when leadership can no longer be trusted: the lock connection failed or the
    /// lock is gone.
    ///
    /// The check waits on the server rather than here: a connection with a query in flight is
    /// read all the time, so the error the server sends as it ends the connection arrives at
    /// once, not at the next check, while the lock it freed is still up for grabs.
    pub async fn lost(&mut self) -> String {
        loop {
            let check = sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted \
                 AND ((classid::bigint << 32) | objid::bigint) = $1) \
                 FROM pg_sleep($2)",
            )
            .bind(LOCK_KEY)
            .bind(CHECK_EVERY.as_secs_f64())
            .fetch_one(&mut self.conn);
            match tokio::time::timeout(CHECK_EVERY + CHECK_TIMEOUT, check).await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => return "advisory lock no longer held".into(),
                Ok(Err(e)) => return format!("lock connection failed: {e}"),
                Err(_) => return "lock connection check timed out".into(),
            }
        }
    }

    /// Releases the lock explicitly (on shutdown), so a standby takes over at once (after the
    /// check in flight, at most `CHECK_EVERY`). Bounded: over a lost connection it gives up,
    /// and the server frees the lock itself when it drops the connection.
    pub async fn release(mut self) {
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut self.conn);
        if tokio::time::timeout(CHECK_EVERY + CHECK_TIMEOUT, unlock)
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(CHECK_TIMEOUT, self.conn.close()).await;
        }
    }
}
