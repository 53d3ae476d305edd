//! NATS reached over TLS only, each service showing a certificate of its own: the poller (its
//! flags) and the gateway binary (its environment) take the authority and their certificate,
//! and an alert inserted by SQL still reaches a WebSocket. The same through a NATS in operator
//! mode, each service with a `.creds` file of its own.

use std::time::Duration;

use pulse_common::nats::{NatsArgs, NatsTls};
use pulse_test_support::nats::PrivateNats;
use pulse_test_support::operator::Operator;
use pulse_test_support::tls::TestPki;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn poller_and_gateway_reach_a_nats_that_requires_client_certificates() {
    let pki = TestPki::new("Pulse NATS test CA");
    let ca = pki.ca_file();
    let nats = PrivateNats::with_tls(&pki, true).await;
    // The server talks to no client without a certificate its authority signed.
    // Held to the end: its files go with it.
    let another = TestPki::new("Another CA");
    let stranger = another.client("stranger");
    for tls in [
        NatsTls::default(),
        NatsTls {
            ca_file: Some(ca.clone()),
            ..NatsTls::default()
        },
        NatsTls {
            ca_file: Some(ca.clone()),
            cert_file: Some(stranger.cert),
            key_file: Some(stranger.key),
        },
    ] {
        let attempt = NatsArgs {
            tls: tls.clone(),
            ..NatsArgs::at(&nats.url)
        };
        let refused = tokio::time::timeout(T, pulse_common::nats::connect_once(&attempt, "t"));
        assert!(
            matches!(refused.await, Ok(Err(_))),
            "connected with {tls:?}"
        );
    }

    let poller_cert = pki.client("pulse-poller");
    let gateway_cert = pki.client("pulse-gateway");
    let ca = ca.to_string_lossy();
    let (poller_cert, poller_key) = (
        poller_cert.cert.to_string_lossy(),
        poller_cert.key.to_string_lossy(),
    );
    alert_reaches_a_websocket_through(
        &nats.url,
        &[
            "--nats-ca-file",
            &ca,
            "--nats-cert-file",
            &poller_cert,
            "--nats-key-file",
            &poller_key,
        ],
        &[
            ("PULSE_NATS_CA_FILE", &ca),
            ("PULSE_NATS_CERT_FILE", &gateway_cert.cert.to_string_lossy()),
            ("PULSE_NATS_KEY_FILE", &gateway_cert.key.to_string_lossy()),
        ],
    )
    .await;
}

/// NATS in operator mode (decentralized JWT authentication): the poller (its flag) and the
/// gateway binary (its environment) each take a `.creds` file their account issued.
#[tokio::test]
async fn poller_and_gateway_reach_an_operator_mode_nats_with_creds_files() {
    let operator = Operator::new();
    let nats = PrivateNats::in_operator_mode(&operator).await;
    // Its folder is the test's own, removed on drop.
    let dir = TestPki::new("creds files");
    let (poller, gateway) = (dir.file("poller.creds", ""), dir.file("gateway.creds", ""));
    operator.write_creds(&poller);
    operator.write_creds(&gateway);
    alert_reaches_a_websocket_through(
        &nats.url,
        &["--nats-creds-file", &poller.to_string_lossy()],
        &[("PULSE_NATS_CREDS_FILE", &gateway.to_string_lossy())],
    )
    .await;
}

/// A poller (with `poller_flags`) and a gateway binary (with `gateway_env`) on the NATS at
/// `nats_url`: an alert inserted by SQL reaches a WebSocket.
async fn alert_reaches_a_websocket_through(
    nats_url: &str,
    poller_flags: &[&str],
    gateway_env: &[(&str, &str)],
) {
    let db = ScratchDb::migrated("gwsecured").await;
    let tenant = db.tenant("secured", 1).await;
    let mut args = vec!["p", "--database-url", &db.url, "--nats-url", nats_url];
    args.extend(poller_flags);
    let mut pc: pulse_poller::PollerConfig = pulse_test_support::parse_config(&args);
    pc.poll_interval = Duration::from_secs(60);
    let poller = spawn_poller(pc).await;
    // On a nats-server of its own, the poller creates its streams first.
    poller.wait_active().await;

    let port = free_port();
    let mut env = vec![("NATS_URL", nats_url)];
    env.extend(gateway_env);
    // Returns once the gateway is ready: connected to NATS.
    let _gateway = spawn_gateway_process(port, &env).await;
    let mut c = viewer_on_port(port, &tenant).await;
    c.subscribe(json!({"type": "alerts"})).await;
    c.until(Duration::from_secs(15), |m| {
        m["type"] == "alerts" && m["alerts"] == json!([])
    })
    .await;
    let id = db.open_alert(&tenant, "dev-1", "secured").await;
    let pushed = c
        .until(T, |m| {
            m["type"] == "alerts" && m["alerts"][0]["alert_id"] == id
        })
        .await;
    assert_eq!(pushed["alerts"][0]["summary"], "secured");
    poller.stop().await;
}

#[tokio::test]
async fn a_gateway_that_cannot_verify_the_nats_certificate_stays_unready_and_says_why() {
    let pki = TestPki::new("Pulse NATS test CA");
    let nats = PrivateNats::with_tls(&pki, false).await;
    let wrong = TestPki::new("Another CA");
    let log = pki.file("gateway.log", "");
    let port = free_port();
    let _gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_pulse-gateway"))
        .env("PULSE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("PULSE_JWT_SECRET", SECRET)
        .env("NATS_URL", &nats.url)
        .env("PULSE_NATS_CA_FILE", wrong.ca_file())
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The client's own reconnects say only "IO error"; the gateway looks into why.
    eventually("the reason logged", Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("NATS unreachable") && text.contains("invalid peer certificate")
    })
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = readyz(addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["nats"], false, "{body}");
}
