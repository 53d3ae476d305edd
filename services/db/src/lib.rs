//! `pulse-db`: the PostgreSQL side that more than one Pulse service relies on, kept in one
//! place so the schema, the roles the services work as, and the settings they exchange cannot
//! drift apart between them.
//!
//! # Layout
//! - [`mod@migrate`]: applies `migrations/` (the repository root's folder, compiled in), serialised
//!   between concurrent runs by sqlx's advisory lock.
//! - [`pool`]: connection pools that connect on first use and work as a service's own role,
//!   and the `DATABASE_URL` flag they are made from.
//! - [`roles`]: the roles of migrations/20261201000004_service_roles.sql, and transactions on
//!   behalf of one tenant.
//! - [`settings`]: `pulse_settings`, written by the poller and read by the web service and the
//!   triggers.
//!
//! # Error policy
//! Everything returns [`Error`] or `sqlx::Error`; nothing here panics on what the database or
//! the configuration holds.

pub mod migrate;
pub mod pool;
pub mod roles;
pub mod settings;

pub use migrate::migrate;
pub use pool::{DatabaseArgs, InvalidDatabaseUrl, check_url, lazy_pool};

/// What can go wrong setting up or changing the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `DATABASE_URL` cannot be parsed.
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// A migration could not be applied.
    #[error("cannot apply migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}
