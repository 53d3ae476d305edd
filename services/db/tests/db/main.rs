//! Integration tests of the schema, the roles and the settings against real PostgreSQL. Each
//! test owns a fresh database and unique tenant ids, so tests run in parallel and again.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod deployment;
mod event_writes;
mod layout;
mod migrate;
mod schema;
mod settings;
mod timestamps;
