//! What every Pulse service shares, and nothing service-specific.
//!
//! # Layout
//! - [`telemetry`]: tracing subscriber, optional OpenTelemetry OTLP export, W3C propagation.
//! - [`trace_headers`]: carrying trace context in NATS message headers.
//! - [`shutdown`]: a future that resolves on SIGINT or SIGTERM.
//! - [`startup`]: what every service does as it starts (stop token, registry, listener, NATS
//!   readiness).
//! - [`ops`]: the `/healthz`, `/readyz` and `/metrics` endpoints.
//! - [`http_server`]: serving a router with a deadline for every request head.
//! - [`client_addr`]: the client's address behind trusted proxies.
//! - [`backoff`]: capped exponential backoff with full jitter for reconnect loops.
//! - [`nats`]: connecting to NATS (credentials, TLS with a CA and client certificate of the
//!   deployment's own) with logging of connection events, and why a connection fails.
//! - [`duration`](mod@duration): durations in configuration (`30s`, `24h`, or plain seconds).
//! - [`config_value`]: clap value parsers that bound numbers and durations, and check PEM
//!   files, at parse time.
//! - [`device_bucket`]: the device registry's KV bucket, created the same way everywhere.
//! - [`healthcheck`]: the `healthcheck` subcommand of every binary, for distroless images.
//! - [`process`]: process metrics (resident memory, open files) for every service.
//!
//! # Error policy
//! Library code returns typed errors or `anyhow::Result` with context; nothing here panics on
//! input from the network or the environment.

pub mod backoff;
pub mod client_addr;
pub mod config_value;
pub mod device_bucket;
pub mod duration;
pub mod healthcheck;
pub mod http_server;
pub mod nats;
pub mod ops;
pub mod process;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod trace_headers;
