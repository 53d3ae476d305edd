use super::*;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    nats: NatsArgs,
}

fn parse(url: &str) -> Result<String, String> {
    use clap::Parser as _;
    Cli::try_parse_from(["service", "--nats-url", url])
        .map(|cli| cli.nats.url)
        .map_err(|e| e.to_string())
}

#[test]
fn nats_url_is_checked_when_it_is_parsed_and_keeps_its_password_hidden() {
    assert_eq!(
        parse("nats://a:4222, nats://b:4222").unwrap(),
        "nats://a:4222, nats://b:4222"
    );
    for empty in ["", " , "] {
        let err = parse(empty).unwrap_err();
        assert!(err.contains("NATS_URL names no server"), "{empty:?}: {err}");
    }
    let err = parse("nats://a:4222,nats://user:s3cret@b:port").unwrap_err();
    assert!(err.contains("invalid NATS_URL entry"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

const UP: LinkState = LinkState {
    connected: true,
    connects: 1,
};

#[tokio::test]
async fn work_ends_when_its_connection_drops_or_is_replaced() {
    for after in [
        LinkState {
            connected: false,
            connects: 1,
        },
        LinkState {
            connected: true,
            connects: 2,
        },
    ] {
        let (tx, link) = watch::channel(UP);
        let dropping = async {
            tokio::task::yield_now().await;
            tx.send_replace(after);
            std::future::pending::<()>().await
        };
        assert_eq!(unless_dropped(&link, dropping).await, None, "{after:?}");
    }
}

#[tokio::test]
async fn away_for_counts_one_unbroken_outage() {
    use std::time::{Duration, Instant};
    let down = LinkState {
        connected: false,
        connects: 1,
    };
    let grace = Duration::from_millis(300);
    let (tx, link) = watch::channel(UP);
    let started = Instant::now();
    let flapping = async {
        // Down 200 ms, back, down again: only the second outage runs its whole grace.
        tx.send_replace(down);
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send_replace(UP);
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(down);
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = away_for(&link, grace) => {}
        () = flapping => unreachable!(),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    // Up: `connected` resolves at once; down for good with the client gone: never.
    tx.send_replace(UP);
    connected(&link).await;
    tx.send_replace(down);
    drop(tx);
    let never = tokio::time::timeout(2 * grace, away_for(&link, grace));
    assert!(never.await.is_err());
}

#[tokio::test]
async fn work_runs_to_its_end_on_a_steady_link_or_one_whose_client_is_gone() {
    let (tx, link) = watch::channel(UP);
    assert_eq!(unless_dropped(&link, async { 7 }).await, Some(7));
    drop(tx);
    let slow = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        8
    };
    assert_eq!(unless_dropped(&link, slow).await, Some(8));
}

#[test]
fn credentials_in_urls_are_redacted() {
    assert_eq!(
        redact("nats://pulse:s3cret@nats-0:4222,nats://tok@nats-1:4222,nats://nats-2:4222"),
        "nats://***@nats-0:4222,nats://***@nats-1:4222,nats://nats-2:4222"
    );
    assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    assert_eq!(redact("127.0.0.1:4222"), "127.0.0.1:4222");
}

#[test]
fn a_list_of_servers_is_read_as_one_address_each() {
    let addrs = server_addrs(" nats://a:4222, nats://u:p@b:4223 ,c:4224,").unwrap();
    let hosts: Vec<_> = addrs.iter().map(|a| (a.host(), a.port())).collect();
    assert_eq!(hosts, [("a", 4222), ("b", 4223), ("c", 4224)]);
    assert!(addrs[1].has_user_pass());
    assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
}

#[test]
fn websocket_urls_are_refused_as_the_client_would_not_speak_tls_to_them() {
    for url in ["ws://u:s3cret@a:443", "nats://a:4222, wss://u:s3cret@b:443"] {
        let shown = format!("{:#}", server_addrs(url).unwrap_err());
        assert!(
            shown.contains("ws:// and wss:// are not supported"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

#[test]
fn an_unreadable_server_list_is_refused_without_showing_credentials() {
    let e = server_addrs("nats://a:4222,nats://u:s3cret@b:notaport").unwrap_err();
    let shown = format!("{e:#}");
    assert!(shown.contains("nats://***@b:notaport"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(server_addrs(" , ").is_err());
}

#[test]
fn percent_encoded_credentials_are_decoded() {
    assert_eq!(decode("p%40ss%3Aword"), "p@ss:word");
}
