//! Connecting to NATS: retries until the server answers, and reports connection events.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

use crate::backoff::Backoff;

/// Connection state as seen by the client's event callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub connected: bool,
    /// Increases on every (re)connection, so a watcher can tell a reconnect from a blip it
    /// missed.
    pub connects: u64,
}

/// A NATS client plus a watch of its connection state.
pub struct NatsLink {
    pub client: Client,
    pub state: watch::Receiver<LinkState>,
}

/// Connects to `url` as `name`, retrying with backoff until it succeeds or `give_up` resolves.
/// Slow-consumer events are counted by `on_slow_consumer`, never logged one by one.
pub async fn connect(
    url: &str,
    name: &str,
    on_slow_consumer: impl Fn() + Send + Sync + 'static,
    give_up: impl std::future::Future<Output = ()>,
) -> anyhow::Result<NatsLink> {
    let (tx, rx) = watch::channel(LinkState {
        connected: false,
        connects: 0,
    });
    let tx = std::sync::Arc::new(tx);
    let on_slow_consumer = std::sync::Arc::new(on_slow_consumer);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    tokio::pin!(give_up);
    loop {
        let events = tx.clone();
        let slow = on_slow_consumer.clone();
        let options = ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .max_reconnects(None)
            .event_callback(move |event| {
                let events = events.clone();
                let slow = slow.clone();
                async move {
                    match event {
                        Event::Connected => {
                            tracing::info!("NATS connected");
                            events.send_modify(|s| {
                                s.connected = true;
                                s.connects += 1;
                            });
                        }
                        Event::Disconnected => {
                            tracing::warn!("NATS disconnected; reconnecting");
                            events.send_modify(|s| s.connected = false);
                        }
                        Event::SlowConsumer(_) => slow(),
                        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
                        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            });
        let attempt = tokio::select! {
            r = options.connect(url) => r,
            () = &mut give_up => anyhow::bail!("gave up connecting to NATS at {url}"),
        };
        match attempt {
            Ok(client) => {
                tx.send_modify(|s| {
                    s.connected = true;
                    if s.connects == 0 {
                        s.connects = 1;
                    }
                });
                return Ok(NatsLink { client, state: rx });
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, url, retry_in = ?delay, "cannot connect to NATS");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut give_up => {
                        return Err(e).with_context(|| format!("cannot connect to NATS at {url}"));
                    }
                }
            }
        }
    }
}
