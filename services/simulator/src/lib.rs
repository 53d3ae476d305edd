//! `pulse-simulator`: demo tenants, users and devices, then a steady stream of telemetry
//! readings and alert changes, so dashboards have something live to show. A program of its own
//! so that the poller, which only reads PostgreSQL and publishes, carries nothing that writes
//! tenant data or hashes passwords.
//!
//! [`seed()`] creates what is missing and changes nothing that exists. [`run`] seeds, then every
//! interval writes one reading per reporting device in a single insert, moves a few alerts
//! along, and every 30 s writes the batteries that changed. About 3% of devices are flaky and go
//! quiet for minutes at a time, so STALE and OFFLINE devices show up. An alert about a device
//! also moves that device's readings (a low-battery alert drains its battery, an offline alert
//! silences it), so alerts and telemetry tell the same story.
//!
//! It is for demos and local development only: every demo user shares one password.
//!
//! It deletes only the readings of its tenants older than `PULSE_SIM_KEEP_READINGS` (an
//! hour by default), so that a demo left running does not fill the disk. It must never:
//! - write `devices.last_seen_at`: the telemetry trigger keeps it equal to the newest reading;
//! - touch a tenant it was not given, or delete anything else;
//! - rehash or reset the password of a user that already exists;
//! - exit on a database error once running: a failed step is logged and retried with backoff.
//!
//! # Layout
//! - `args`: the command line and its validation.
//! - `naming`: tenant, user, device and site names, and the login table.
//! - `seed`: the demo data created where missing, and read back.
//! - `walk`, `presence`, `alerts`, `device`: how readings wander, when devices report,
//!   how alerts change; free of I/O.
//! - `simulator`: the fleet in memory, one step at a time.
//! - `tick`: one step written to PostgreSQL.
//! - `prune`: the demo tenants' old readings deleted, beside the ticks.
//! - [`run`] (here): seed, then tick every interval until shutdown, retrying what fails.

mod alerts;
mod args;
mod device;
mod naming;
mod presence;
mod prune;
mod seed;
mod simulator;
mod tick;
mod walk;

#[cfg(test)]
mod testing;

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use pulse_common::backoff::Backoff;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use sqlx::PgPool;
use tokio::time::Instant;

pub use args::SimulateArgs;
pub use naming::DemoLogin;
pub use seed::seed;
pub use walk::RandomWalk;

use crate::naming::login_table;
use crate::seed::load_devices;
use crate::simulator::Simulator;

const REPORT_EVERY: Duration = Duration::from_secs(60);
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(10);

/// Runs `attempt` until it succeeds, waiting with capped backoff between failures; `None` when
/// `shutdown` resolves first.
async fn until_ok<T, S, F, Fut>(what: &str, shutdown: &mut Pin<&mut S>, mut attempt: F) -> Option<T>
where
    S: Future<Output = ()>,
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    loop {
        let result = tokio::select! {
            () = shutdown.as_mut() => return None,
            result = attempt() => result,
        };
        match result {
            Ok(value) => return Some(value),
            Err(e) => {
                let delay = backoff.next_delay().max(RETRY_BASE);
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "cannot {what}; retrying");
                tokio::select! {
                    () = shutdown.as_mut() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Seeds, then writes telemetry and alert changes every interval until `shutdown` resolves
/// (or, with `seed_only`, returns after seeding). Invalid arguments fail at once; database
/// errors are logged and retried with backoff capped at 10 s, never returned.
pub async fn run(
    pool: PgPool,
    args: SimulateArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    args.validate()?;
    let mut shutdown = pin!(shutdown);

    let Some(logins) = until_ok("seed the demo data", &mut shutdown, || seed(&pool, &args)).await
    else {
        return Ok(());
    };
    for login in &logins {
        tracing::info!(tenant = %login.tenant_id, email = %login.email, role = login.role, "demo login");
    }
    print!("{}", login_table(&logins, &args.password));
    if args.seed_only {
        return Ok(());
    }

    let Some(rows) = until_ok("read the demo devices", &mut shutdown, || {
        load_devices(&pool, &args)
    })
    .await
    else {
        return Ok(());
    };
    let interval = args.interval();
    let mut sim = Simulator::new(rows, &args.tenants, interval, StdRng::from_os_rng());
    tracing::info!(
        tenants = sim.tenants.len(),
        devices = sim.devices.len(),
        flaky = sim.flaky_devices(),
        interval_ms = args.interval_ms,
        "simulating"
    );
    if sim.devices.is_empty() {
        tracing::warn!("no demo devices found; only alerts will change");
    }

    // Dropped when this returns, which stops the pruning.
    let (_stop_pruning, stop) = tokio::sync::oneshot::channel::<()>();
    if !args.keep_readings.is_zero() {
        tokio::spawn(prune::keep_pruning(
            pool.clone(),
            args.tenants.clone(),
            args.keep_readings,
            stop,
        ));
    }

    let start = Instant::now();
    let mut next_report = REPORT_EVERY;
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    loop {
        let began = Instant::now();
        let now = began.duration_since(start);
        let outcome = tokio::select! {
            () = shutdown.as_mut() => break,
            outcome = sim.tick(&pool, now) => outcome,
        };
        let resume_at = match outcome {
            Ok(()) => {
                backoff.reset();
                began + interval
            }
            Err(e) => {
                sim.stats.failed_ticks += 1;
                let delay = backoff.next_delay().max(interval);
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "simulator tick failed");
                Instant::now() + delay
            }
        };
        if now >= next_report {
            sim.report();
            next_report = now + REPORT_EVERY;
        }
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = tokio::time::sleep_until(resume_at) => {}
        }
    }
    tracing::info!("simulator stopped");
    Ok(())
}
