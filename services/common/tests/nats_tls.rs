//! TLS towards a real nats-server: the authority and the client certificate of `NatsTls`
//! reach it, a server without TLS is refused once TLS is asked for, and files that are not
//! what their setting needs stop the service at start, the setting named.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use pulse_common::nats::{NatsArgs, NatsTls};
use pulse_test_support::nats::PrivateNats;
use pulse_test_support::tls::TestPki;

/// Whether `pulse_common::nats::connect` reaches `url` with `tls` within 3 s.
async fn connects(url: &str, tls: NatsTls) -> bool {
    let nats = NatsArgs {
        tls,
        ..NatsArgs::at(url)
    };
    let give_up = tokio::time::sleep(Duration::from_secs(3));
    pulse_common::nats::connect(&nats, "test", || {}, give_up)
        .await
        .is_ok()
}

fn trusting(ca: PathBuf) -> NatsTls {
    NatsTls {
        ca_file: Some(ca),
        ..NatsTls::default()
    }
}

#[tokio::test]
async fn a_server_signed_by_the_given_authority_is_reached_and_no_other() {
    let pki = TestPki::new("Pulse test CA");
    let nats = PrivateNats::with_tls(&pki, false).await;
    let tls_url = nats.url.replace("nats://", "tls://");
    assert!(connects(&nats.url, trusting(pki.ca_file())).await);
    assert!(connects(&tls_url, trusting(pki.ca_file())).await);
    // The system's authorities do not know the test's; nor does another authority.
    assert!(!connects(&tls_url, NatsTls::default()).await);
    let other = TestPki::new("Another CA");
    assert!(!connects(&nats.url, trusting(other.ca_file())).await);
}

#[tokio::test]
async fn a_server_that_verifies_clients_takes_a_certificate_its_authority_signed() {
    let pki = TestPki::new("Pulse test CA");
    let ca = pki.ca_file();
    let nats = PrivateNats::with_tls(&pki, true).await;
    let mine = pki.client("pulse-gateway");
    let with = |cert: pulse_test_support::tls::CertFiles| NatsTls {
        ca_file: Some(ca.clone()),
        cert_file: Some(cert.cert),
        key_file: Some(cert.key),
    };
    assert!(connects(&nats.url, with(mine)).await);
    assert!(!connects(&nats.url, trusting(ca.clone())).await);
    // Held to the end: its files go with it.
    let another = TestPki::new("Another CA");
    let stranger = another.client("stranger");
    assert!(!connects(&nats.url, with(stranger)).await);
}

#[tokio::test]
async fn a_server_without_tls_is_refused_once_tls_is_asked_for() {
    // The shared-style plain server: reached in the clear when nothing asks for TLS, refused
    // (not talked to in the clear) when an authority is given.
    let nats = PrivateNats::start().await;
    let pki = TestPki::new("Pulse test CA");
    assert!(connects(&nats.url, NatsTls::default()).await);
    assert!(!connects(&nats.url, trusting(pki.ca_file())).await);
    let cert = pki.client("pulse-poller");
    let client_only = NatsTls {
        ca_file: None,
        cert_file: Some(cert.cert),
        key_file: Some(cert.key),
    };
    assert!(!connects(&nats.url, client_only).await);
}

fn parse(args: &[&str]) -> Result<NatsArgs, String> {
    let mut all = vec!["service", "--nats-url", "nats://127.0.0.1:4222"];
    all.extend_from_slice(args);
    pulse_test_support::try_parse_config(&all)
}

#[test]
fn tls_files_are_checked_when_the_configuration_is_parsed() {
    let pki = TestPki::new("Pulse test CA");
    let client = pki.client("svc");
    let (ca, cert, key) = (
        pki.ca_file().to_string_lossy().into_owned(),
        client.cert.to_string_lossy().into_owned(),
        client.key.to_string_lossy().into_owned(),
    );
    let parsed = parse(&[
        "--nats-ca-file",
        &ca,
        "--nats-cert-file",
        &cert,
        "--nats-key-file",
        &key,
    ])
    .unwrap();
    assert_eq!(parsed.tls.ca_file, Some(pki.ca_file()));
    assert_eq!(parsed.tls.key_file, Some(client.key.clone()));
    assert_eq!(parse(&[]).unwrap().tls, NatsTls::default());

    let missing = pki.file("gone.pem", "").with_extension("missing");
    let missing = missing.to_string_lossy();
    let err = parse(&["--nats-ca-file", &missing]).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_CA_FILE: cannot read certificates"),
        "{err}"
    );
    let empty = pki.file("empty.pem", "not a certificate\n");
    let err = parse(&["--nats-ca-file", &empty.to_string_lossy()]).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_CA_FILE: no PEM certificate"),
        "{err}"
    );
    // A certificate given as the key, a key given as the certificate.
    let err = parse(&["--nats-cert-file", &cert, "--nats-key-file", &cert]).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_KEY_FILE: cannot read a private key"),
        "{err}"
    );
    let err = parse(&["--nats-cert-file", &key, "--nats-key-file", &key]).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_CERT_FILE: no PEM certificate"),
        "{err}"
    );
    // One without the other.
    let err = parse(&["--nats-cert-file", &cert]).unwrap_err();
    assert!(err.contains("PULSE_NATS_KEY_FILE"), "{err}");
    let err = parse(&["--nats-key-file", &key]).unwrap_err();
    assert!(err.contains("PULSE_NATS_CERT_FILE"), "{err}");
}

/// A key that is not the client certificate's, or an authorities' file with a certificate
/// that cannot be a trust anchor, passes each file's own check: it is refused before the
/// first connect, the setting named, not left to fail every connect with an IO error.
#[tokio::test]
async fn a_key_of_another_certificate_or_an_unusable_authority_is_refused_before_connecting() {
    let pki = TestPki::new("Pulse test CA");
    let nats = PrivateNats::with_tls(&pki, true).await;
    let (mine, other) = (pki.client("mine"), pki.client("other"));
    let mismatched = NatsArgs {
        tls: NatsTls {
            ca_file: Some(pki.ca_file()),
            cert_file: Some(mine.cert.clone()),
            key_file: Some(other.key),
        },
        ..NatsArgs::at(&nats.url)
    };
    let err = refusal(&mismatched).await;
    assert!(
        err.contains("PULSE_NATS_KEY_FILE") && err.contains("not the key of the certificate"),
        "{err}"
    );
    let give_up = tokio::time::sleep(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let err = pulse_common::nats::connect(&mismatched, "t", || {}, give_up).await;
    assert!(err.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );

    // A PEM block whose content is no certificate: read as one, refused as an authority.
    let broken = pki.file(
        "broken-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    );
    let unusable = NatsArgs {
        tls: trusting(broken),
        ..NatsArgs::at(&nats.url)
    };
    let err = refusal(&unusable).await;
    assert!(
        err.contains("PULSE_NATS_CA_FILE") && err.contains("cannot be a trust anchor"),
        "{err}"
    );
    // Both good: connected.
    let good = NatsArgs {
        tls: NatsTls {
            ca_file: Some(pki.ca_file()),
            cert_file: Some(mine.cert),
            key_file: Some(mine.key),
        },
        ..NatsArgs::at(&nats.url)
    };
    pulse_common::nats::connect_once(&good, "t").await.unwrap();
}

/// Why a single connect to `nats` is refused.
async fn refusal(nats: &NatsArgs) -> String {
    match pulse_common::nats::connect_once(nats, "t").await {
        Ok(_) => panic!("connected"),
        Err(e) => format!("{e:#}"),
    }
}
