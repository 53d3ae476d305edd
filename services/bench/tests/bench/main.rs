//! Smoke-sized runs of every scenario against an in-process gateway and the real NATS at
//! NATS_URL, so the bench cannot rot: real WebSockets, real NATS, no mocks. Each run uses its
//! own random tenant ids.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod helpers;

mod rolling;
mod scenarios;
