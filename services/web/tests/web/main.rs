//! Integration tests of the web service against real PostgreSQL and NATS, through real HTTP.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod helpers;

mod account;
mod database_tls;
mod deployed;
mod events;
mod layout;
mod logins;
mod rest;
mod site;
