//! Integration tests of the gateway: a real gateway, real NATS (and, end to end, real
//! PostgreSQL and the real poller), driven through a real WebSocket client.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod helpers;

mod auth;
mod budgets;
mod events;
mod fanout;
mod jwks;
mod layout;
mod nats_tls;
mod operations;
mod permissions;
mod protocol;
mod replicated;
mod traces;
