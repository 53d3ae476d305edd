//! Smoke-sized runs of every scenario against an in-process gateway and the real NATS at
//! NATS_URL, so the bench cannot rot: real WebSockets, real NATS, no mocks. Each run uses its
//! own random tenant ids. The events scenario also runs against a private three-node NATS
//! cluster that loses a node mid-run (`nats_cluster`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod helpers;

mod layout;
mod nats_cluster;
mod rolling;
mod scenarios;
