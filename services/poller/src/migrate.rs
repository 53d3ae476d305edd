//! `pulse-poller migrate`: applies the migrations once PostgreSQL answers. It runs as an
//! initContainer before the poller and web pods start; while the database is unreachable (a
//! failover, a cluster coming up with its database) it waits, retrying with backoff, instead
//! of exiting at once into a restart back-off of up to five minutes.

use std::time::Duration;

use pulse_common::backoff::Backoff;
use pulse_common::config_value::{duration, secs};
use tokio::time::Instant;

/// The shortest a connection attempt is given, however little of the wait is left.
const LEAST_ATTEMPT: Duration = Duration::from_secs(1);

/// The arguments of `pulse-poller migrate`.
#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: pulse_db::DatabaseArgs,

    /// How long to wait for PostgreSQL to answer before giving up (`5m`, `90s`, or whole
    /// seconds); 0 tries once.
    #[arg(long = "wait", env = "PULSE_MIGRATE_WAIT", default_value = "5m",
          value_parser = duration(Duration::ZERO, secs(24 * 3600)))]
    pub wait: Duration,
}

/// Applies the migrations, waiting up to `args.wait` for the database to be reachable. A
/// database that answers but refuses (a wrong password, a migration that fails) is an error at
/// once: waiting would not change it.
pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    args.db.validate()?;
    let pool = pulse_db::lazy_pool(&args.db.url, 1, None)?;
    let give_up = Instant::now() + args.wait;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        // The pool itself retries a refused connection until its acquire timeout (5 s):
        // bounded here too, so a short wait is not overrun.
        let left = give_up.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left.max(LEAST_ATTEMPT), pool.acquire())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match attempt {
            Ok(_) => break,
            Err(e) if unreachable(&e) && Instant::now() < give_up => {
                let delay = backoff
                    .next_delay()
                    .min(give_up.saturating_duration_since(Instant::now()));
                tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL is not reachable yet; waiting");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot reach PostgreSQL to apply the migrations (waited up to {})",
                    pulse_common::duration::format(args.wait)
                )));
            }
        }
    }
    pulse_db::migrate(&pool).await?;
    Ok(())
}

/// Whether `e` says the database is not there (yet), as opposed to refusing this client.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 57P03 cannot_connect_now: starting up or shutting down; 53300 too_many_connections.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}
