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

/// A file of the test's own holding `contents`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(pulse_test_support::unique("pulse-seed"));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn an_nkey_seed_authenticates_and_no_other_does() {
    use pulse_common::nats::NkeySeed;
    let user = nkeys::KeyPair::new_user();
    let public = user.public_key();
    let nats = pulse_test_support::nats::PrivateNats::configured(
        |_| format!("authorization {{ users = [ {{ nkey: {public} }} ] }}\n"),
        &[],
    )
    .await;
    let connects_with = |seed: Option<NkeySeed>| {
        let nats = NatsArgs {
            nkey: seed,
            ..NatsArgs::at(&nats.url)
        };
        async move {
            let give_up = tokio::time::sleep(Duration::from_secs(2));
            pulse_common::nats::connect(&nats, "test", || {}, give_up)
                .await
                .is_ok()
        }
    };
    // As `nk -gen user -pubout` writes it: the seed, then the public key.
    let mine = TempFile::new(&format!("\n{}\n{public}\n", user.seed().unwrap()));
    let seed = NkeySeed::read(&mine.0).unwrap();
    assert_eq!(format!("{seed:?}"), "NkeySeed(***)");
    assert!(connects_with(Some(seed)).await);
    let other = TempFile::new(&nkeys::KeyPair::new_user().seed().unwrap());
    assert!(!connects_with(Some(NkeySeed::read(&other.0).unwrap())).await);
    assert!(!connects_with(None).await);

    // Checked when read: a seed of another kind, or none at all, is refused by name.
    let account = TempFile::new(&nkeys::KeyPair::new_account().seed().unwrap());
    let err = NkeySeed::read(&account.0).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_NKEY_FILE") && err.contains("not of a user"),
        "{err}"
    );
    let parse = |file: &TempFile| {
        let path = file.0.to_string_lossy().into_owned();
        pulse_test_support::try_parse_config::<NatsArgs>(&["svc", "--nats-nkey-file", &path])
    };
    assert!(parse(&mine).unwrap().nkey.is_some());
    let err = parse(&account).unwrap_err();
    assert!(err.contains("PULSE_NATS_NKEY_FILE"), "{err}");
    // The seed itself where its file was meant: refused without being repeated.
    let seed = user.seed().unwrap();
    let err = pulse_test_support::try_parse_config::<NatsArgs>(&["svc", "--nats-nkey-file", &seed])
        .unwrap_err();
    assert!(err.contains("not hold the seed itself"), "{err}");
    assert!(!err.contains(&seed[..20]), "{err}");
    let garbage = TempFile::new("SUnot-a-seed");
    let err = NkeySeed::read(&garbage.0).unwrap_err();
    assert!(err.contains("holds no NKey seed"), "{err}");
    assert!(!err.contains("SUnot"), "{err}");
}

#[tokio::test]
async fn a_creds_file_authenticates_against_an_operator_mode_server_and_no_other_does() {
    use pulse_common::nats::NatsCreds;
    use pulse_test_support::operator::Operator;
    let operator = Operator::new();
    let nats = pulse_test_support::nats::PrivateNats::in_operator_mode(&operator).await;
    let creds_file = |foreign: bool| {
        let file = TempFile::new("");
        operator.write_creds(&file.0, foreign);
        file
    };
    let client_with = |creds: Option<NatsCreds>| {
        let nats = NatsArgs {
            creds,
            ..NatsArgs::at(&nats.url)
        };
        async move {
            let give_up = tokio::time::sleep(Duration::from_secs(2));
            pulse_common::nats::connect(&nats, "test", || {}, give_up).await
        }
    };
    let mine = creds_file(false);
    let creds = NatsCreds::read(&mine.0).unwrap();
    assert_eq!(format!("{creds:?}"), "NatsCreds(***)");
    let client = client_with(Some(creds)).await.unwrap();
    // The account's JetStream stores and answers, as the services need it to.
    let js = async_nats::jetstream::new(client.client);
    let config = async_nats::jetstream::stream::Config {
        name: "CREDS".to_owned(),
        subjects: vec!["creds.>".to_owned()],
        ..Default::default()
    };
    let stream = js.create_stream(config).await.unwrap();
    js.publish("creds.a", "stored".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let last = stream
        .get_last_raw_message_by_subject("creds.a")
        .await
        .unwrap();
    assert_eq!(&last.payload[..], b"stored");
    let foreign = creds_file(true);
    assert!(
        client_with(Some(NatsCreds::read(&foreign.0).unwrap()))
            .await
            .is_err()
    );
    assert!(client_with(None).await.is_err());

    // Checked when parsed: a file without credentials, the credentials themselves in place of
    // the file (not repeated), and an NKey file beside it are refused by name.
    let parse = |args: &[&str]| {
        let mut all = vec!["svc"];
        all.extend(args);
        pulse_test_support::try_parse_config::<NatsArgs>(&all)
    };
    let path = mine.0.to_string_lossy().into_owned();
    assert!(
        parse(&["--nats-creds-file", &path])
            .unwrap()
            .creds
            .is_some()
    );
    let garbage = TempFile::new("-----BEGIN NATS USER JWT-----\nnot a jwt\n");
    let err = parse(&["--nats-creds-file", &garbage.0.to_string_lossy()]).unwrap_err();
    assert!(
        err.contains("PULSE_NATS_CREDS_FILE") && err.contains("holds no NATS user JWT"),
        "{err}"
    );
    let text = std::fs::read_to_string(&mine.0).unwrap();
    let err = parse(&[&format!("--nats-creds-file={text}")]).unwrap_err();
    assert!(err.contains("not hold them"), "{err}");
    assert!(!err.contains("SU"), "{err}");
    let seed = TempFile::new(&nkeys::KeyPair::new_user().seed().unwrap());
    let seed_path = seed.0.to_string_lossy().into_owned();
    let err = parse(&["--nats-creds-file", &path, "--nats-nkey-file", &seed_path]).unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");
}
