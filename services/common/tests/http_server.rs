//! `pulse_common::http_server` over real sockets: a slow request head is cut off, handlers see
//! the client's address, and a shutdown lets the request in flight finish.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use pulse_common::http_server::{Serving, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(300);

/// A server of `/addr` (the client's address) and `/slow` (says it started, answers 300 ms
/// later).
async fn start() -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
    Arc<Notify>,
) {
    let started = Arc::new(Notify::new());
    let slow_started = started.clone();
    let router = Router::new()
        .route(
            "/addr",
            get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.to_string() }),
        )
        .route(
            "/slow",
            get(move || async move {
                slow_started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let serving = Serving {
        nodelay: true,
        header_read_timeout: HEADER_READ_TIMEOUT,
    };
    let server = tokio::spawn(serve(
        listener,
        router,
        serving,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop, server, started)
}

/// Sends `GET path` on a new connection and returns the whole answer (the server closes).
async fn get_text(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_is_cut_off_and_others_are_served() {
    let (addr, stop, server, _) = start().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /addr HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let sent = Instant::now();

    // Meanwhile another client is served, and its handler sees its address.
    let mut other = TcpStream::connect(addr).await.unwrap();
    let other_addr = other.local_addr().unwrap();
    other
        .write_all(b"GET /addr HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&other_addr.to_string()), "{answer}");

    // The slow one is closed once its time is up, with nothing answered to it.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    let waited = sent.elapsed();
    assert!(
        read.is_ok(),
        "a half-sent request head held its connection for 5 s"
    );
    assert!(
        waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT * 4,
        "closed after {waited:?}"
    );
    stop.cancel();
    server.await.unwrap();
}

#[tokio::test]
async fn a_shutdown_lets_the_request_in_flight_finish_then_ends() {
    let (addr, stop, server, started) = start().await;
    let in_flight = tokio::spawn(get_text(addr, "/slow"));
    started.notified().await;
    stop.cancel();
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server ends once its last connection did")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after the shutdown"
    );
}
