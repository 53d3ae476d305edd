//! What `NATS_URL` says reaches a real nats-server: the credentials it requires, and a list of
//! servers of which any one that answers will do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pulse_common::nats::NatsArgs;
use pulse_test_support::free_port;
use pulse_test_support::nats::{start_server, wait_listening};

/// A private nats-server started with `args`, once it accepts TCP connections (it may
/// require credentials, so no client is connected to find out), and its port.
async fn server(args: &[&str]) -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = start_server(port, args, &[]);
    wait_listening(port).await;
    (child, port)
}

async fn connects(url: &str) -> bool {
    let give_up = tokio::time::sleep(Duration::from_secs(2));
    pulse_common::nats::connect(&NatsArgs::at(url), "test", || {}, give_up)
        .await
        .is_ok()
}

#[tokio::test]
async fn user_and_password_in_the_url_are_sent() {
    let (_server, port) = server(&["--user", "pulse", "--pass", "p@ss:word"]).await;
    assert!(connects(&format!("nats://pulse:p%40ss%3Aword@127.0.0.1:{port}")).await);
    assert!(!connects(&format!("nats://pulse:wrong@127.0.0.1:{port}")).await);
    assert!(!connects(&format!("nats://127.0.0.1:{port}")).await);
}

#[tokio::test]
async fn a_token_in_the_url_is_sent() {
    let (_server, port) = server(&["--auth", "s3cret-token"]).await;
    assert!(connects(&format!("nats://s3cret-token@127.0.0.1:{port}")).await);
    assert!(!connects(&format!("nats://other-token@127.0.0.1:{port}")).await);
}

#[tokio::test]
async fn any_server_of_a_comma_separated_list_that_answers_will_do() {
    let (_server, port) = server(&["--user", "pulse", "--pass", "secret"]).await;
    let down = free_port();
    let live = format!("nats://pulse:secret@127.0.0.1:{port}");
    let dead = format!("nats://127.0.0.1:{down}");
    assert!(connects(&format!("{dead},{live}")).await);
    assert!(connects(&format!("{live}, {dead}")).await);
    let link = pulse_common::nats::connect_in_background(
        &NatsArgs::at(format!("{dead},{live}")),
        "test",
        pulse_common::nats::SUBSCRIPTION_CAPACITY,
        || {},
    )
    .await
    .unwrap();
    let mut state = link.state.clone();
    tokio::time::timeout(Duration::from_secs(5), state.wait_for(|s| s.connected))
        .await
        .expect("connected through the list within 5 s")
        .unwrap();
}

#[tokio::test]
async fn a_list_with_an_unreadable_url_fails_at_once() {
    let started = std::time::Instant::now();
    let give_up = tokio::time::sleep(Duration::from_secs(10));
    let e = pulse_common::nats::connect(
        &NatsArgs::at("nats://127.0.0.1:4222,nats://h:port"),
        "test",
        || {},
        give_up,
    )
    .await
    .err()
    .expect("an unreadable URL is an error");
    assert!(format!("{e:#}").contains("invalid NATS_URL"), "{e:#}");
    // Refused at once, not retried.
    pulse_test_support::assert_took_less_than(
        Duration::from_secs(1),
        started,
        "an unreadable NATS_URL refused",
    );
}
