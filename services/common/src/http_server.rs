//! Serving a router over HTTP/1.1 with a deadline for every request head.
//!
//! `axum::serve` builds hyper's connections without a timer, and without one hyper waits for a
//! request head as long as the client takes: a client that sends its headers a byte at a time,
//! or nothing at all, holds a connection (and a file descriptor) for good, before any request
//! timeout or in-flight limit of the router sees a request. Here a connection has
//! [`HEADER_READ_TIMEOUT`] to send each request head, then it is closed. The rest is what
//! `axum::serve` does: `ConnectInfo<SocketAddr>` for the handlers, WebSocket upgrades, and a
//! graceful shutdown that stops accepting, lets the requests in flight finish and waits for
//! their connections.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// How long a client may take to send a request's head (its request line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`serve`] treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    /// Accepted sockets send small writes at once (no Nagle).
    pub nodelay: bool,
    /// How long a client may take to send each request head.
    pub header_read_timeout: Duration,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            nodelay: false,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Whether an accept error is about that one connection (its peer gave up), not the server.
fn peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then until the requests in flight
/// are answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Connections watch `stopping` to begin their graceful shutdown when its sender goes, and
    // each holds a `guard` until it ends, so the server can wait for the last one.
    let (stopping_tx, stopping) = watch::channel(());
    let (connections, guard) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection the peer reset before it was accepted: that one is gone, the
                // next may be waiting already.
                Err(e) if peer_gone(&e) => {
                    tracing::debug!(error = %e, "a connection ended before it was accepted");
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors or memory: pause a little rather than spin (a
                    // connection may end meanwhile and free one), and go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if serving.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let mut stopping = stopping.clone();
        let guard = guard.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(serving.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = pin!(connection);
            let mut stop_asked = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(%remote, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !stop_asked => {
                        stop_asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(guard);
        });
    }
    drop(listener);
    drop(stopping_tx);
    drop(guard);
    connections.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_giving_up_is_passed_over_at_once() {
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert!(peer_gone(&aborted));
        // EMFILE and ENFILE: the server is out of descriptors, and must pause.
        assert!(!peer_gone(&std::io::Error::from_raw_os_error(24)));
        assert!(!peer_gone(&std::io::Error::from_raw_os_error(23)));
    }
}
