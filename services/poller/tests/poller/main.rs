//! Integration tests of the poller against real PostgreSQL and real NATS with JetStream.
//! Each test owns a fresh database and unique tenant ids, so tests run in parallel and again.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod helpers;

mod activation;
mod database_tls;
mod deployed;
mod events;
mod failover;
mod fence;
mod layout;
mod lost_streams;
mod migrate;
mod netns;
mod payload;
mod publishing;
mod registry;
mod resilience;
mod tenant_purge;
mod truncate;
mod users;
