//! What every service does as it starts, written once: a stop token cancelled when the
//! shutdown signal comes, a metrics registry that already holds the process metrics (and
//! registers each of the service's own as it is made), a listener whose error names the
//! variable to fix, the open-files limit raised as far as it goes, and NATS's link state
//! mirrored into readiness.

use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;

use anyhow::Context as _;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::nats::LinkState;
use crate::ops::Readiness;

/// A token cancelled once `shutdown` resolves: every loop of the service stops on it.
pub fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    stop
}

/// A metrics registry holding the process metrics (resident memory, open files, CPU).
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    crate::process::register(&mut registry);
    registry
}

/// Registers `metric` in `registry` as `name` and hands it back, so each of a service's
/// metrics is made and registered in one expression.
pub fn register<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Histograms of how long a request or a database read took, one per label set, in seconds
/// from 0.5 ms to about 16 s: every service times its requests and queries on these buckets,
/// so their latencies can be read side by side.
pub fn latency_histograms<L: Clone + Eq + Hash>() -> Family<L, Histogram> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)))
}

/// Raises this process's soft limit on open files to its hard limit, and warns when even that
/// is below `wanted` (what the setting `var` lets the service hold, with its own files), naming
/// both. A container runtime may start a process at 1024 open files whatever the node allows
/// (containerd 2 no longer raises it): a gateway would then refuse connections past about a
/// thousand. Returns the soft limit in force, when it can be read.
pub fn raise_open_files(wanted: u64, var: &str) -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if limit < wanted {
                tracing::warn!(
                    limit,
                    wanted,
                    "the open-files limit is below what {var} allows: connections past it are \
                     refused; raise the hard limit (the container runtime's or the node's)"
                );
            } else {
                tracing::debug!(limit, "open-files limit");
            }
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            None
        }
    }
}

/// Pending connections the kernel may queue before they are accepted (capped by
/// `net.core.somaxconn`). Tokio's default of 1024 overflows when thousands of clients
/// reconnect at once, and each refused SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 8192;

/// Listens on `addr`, which the variable `var` set; the error names both.
pub fn bind(addr: SocketAddr, var: &str) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().with_context(|| format!("cannot listen on {var}={addr}"))
}

/// Keeps the readiness check `nats` equal to the link's state until `stop`, and runs
/// `on_reconnect` each time the link comes back after being lost.
///
/// The reconnect work runs beside the mirror, so that readiness keeps following the link while
/// it does (a gateway reads every subject in use again: minutes, with thousands); one at a
/// time, and once more after it when the link came back again meanwhile.
pub fn mirror_nats<F, Fut>(
    mut state: watch::Receiver<LinkState>,
    readiness: Readiness,
    stop: CancellationToken,
    mut on_reconnect: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = state.borrow().connects;
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        let mut again = false;
        loop {
            let now = *state.borrow_and_update();
            readiness.set("nats", now.connected);
            if now.connected && now.connects != seen {
                // The first connection of a link started in the background is no reconnect
                // (the count goes up on every connection, so this holds even when the mirror
                // saw none of the changes before).
                let first = now.connects == 1;
                seen = now.connects;
                if !first {
                    if running.as_ref().is_some_and(|task| !task.is_finished()) {
                        again = true;
                    } else {
                        running = Some(tokio::spawn(on_reconnect()));
                    }
                }
            }
            tokio::select! {
                changed = state.changed() => if changed.is_err() { break },
                () = stop.cancelled() => break,
                () = finished(&mut running), if again => {
                    again = false;
                    running = Some(tokio::spawn(on_reconnect()));
                }
            }
        }
        if let Some(task) = running {
            task.abort();
        }
    });
}

/// Resolves when `task` has ended (never, without one). Polled only until then: the caller
/// replaces a finished task before polling again.
async fn finished(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task {
        Some(task) => {
            let _ = task.await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_is_cancelled_by_the_shutdown_only() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = cancel_on(async move {
            let _ = rx.await;
        });
        tokio::task::yield_now().await;
        assert!(!stop.is_cancelled());
        let _ = tx.send(());
        tokio::time::timeout(std::time::Duration::from_secs(2), stop.cancelled())
            .await
            .expect("the shutdown cancels the token");
    }

    #[tokio::test]
    async fn a_taken_port_names_its_variable() {
        let held = bind("127.0.0.1:0".parse().unwrap(), "PULSE_X_ADDR").unwrap();
        let addr = held.local_addr().unwrap();
        // A second listener on the same port (reuseaddr does not allow two listeners).
        let err = bind(addr, "PULSE_X_ADDR").unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("cannot listen on PULSE_X_ADDR={addr}")),
            "{err:#}"
        );
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// A link in `initial` state mirrored into a readiness check `nats`, with the reconnects
    /// reported counted.
    fn mirrored(
        initial: LinkState,
    ) -> (
        watch::Sender<LinkState>,
        Readiness,
        CancellationToken,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let (tx, rx) = watch::channel(initial);
        let readiness = Readiness::new(&["nats"]);
        let stop = CancellationToken::new();
        let reconnects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reconnects.clone();
        mirror_nats(rx, readiness.clone(), stop.clone(), move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {}
        });
        (tx, readiness, stop, reconnects)
    }

    /// The link of [`mirrored`], connected once, lost and then back: readiness follows it,
    /// and one reconnect is reported.
    async fn lost_and_back_once(
        tx: &watch::Sender<LinkState>,
        readiness: &Readiness,
        reconnects: &std::sync::atomic::AtomicUsize,
    ) {
        until("ready on the first connection", || readiness.is_ready()).await;
        tx.send_replace(LinkState {
            connected: false,
            connects: 1,
        });
        until("not ready once the link is lost", || !readiness.is_ready()).await;
        tx.send_replace(LinkState {
            connected: true,
            connects: 2,
        });
        until("ready again", || readiness.is_ready()).await;
        // Both changes were handled before readiness turned.
        until("the reconnect reported", || {
            reconnects.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn readiness_follows_the_link_while_reconnect_work_runs_and_that_work_runs_again_after() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let link = |connected, connects| LinkState {
            connected,
            connects,
        };
        let (tx, rx) = watch::channel(link(true, 1));
        let readiness = Readiness::new(&["nats"]);
        let stop = CancellationToken::new();
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (counted, held) = (started.clone(), release.clone());
        mirror_nats(rx, readiness.clone(), stop.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let held = held.clone();
            async move {
                let _ = held.acquire().await.map(|permit| permit.forget());
            }
        });
        until("ready", || readiness.is_ready()).await;
        tx.send_replace(link(false, 1));
        until("not ready", || !readiness.is_ready()).await;
        tx.send_replace(link(true, 2));
        until("the reconnect work started", || {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        // The work holds; the link goes and comes back meanwhile, and readiness says so.
        tx.send_replace(link(false, 2));
        until("not ready while the work runs", || !readiness.is_ready()).await;
        tx.send_replace(link(true, 3));
        until("ready again", || readiness.is_ready()).await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "one at a time");
        release.add_permits(1);
        until("run again for the reconnect meanwhile", || {
            started.load(Ordering::SeqCst) == 2
        })
        .await;
        stop.cancel();
    }

    #[tokio::test]
    async fn readiness_follows_the_link_and_reconnects_are_seen() {
        let (tx, readiness, stop, reconnects) = mirrored(LinkState {
            connected: true,
            connects: 1,
        });
        lost_and_back_once(&tx, &readiness, &reconnects).await;
        stop.cancel();
    }

    #[tokio::test]
    async fn the_first_connection_of_a_link_started_in_the_background_is_no_reconnect() {
        let (tx, readiness, stop, reconnects) = mirrored(LinkState {
            connected: false,
            connects: 0,
        });
        // The mirror has seen the link not connected yet (a current-thread runtime runs it now).
        tokio::task::yield_now().await;
        tx.send_replace(LinkState {
            connected: true,
            connects: 1,
        });
        lost_and_back_once(&tx, &readiness, &reconnects).await;
        stop.cancel();
        tokio::task::yield_now().await;
        assert_eq!(reconnects.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
