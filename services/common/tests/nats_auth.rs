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
    let seed = read_seed(&mine.0).unwrap();
    assert_eq!(format!("{seed:?}"), "NkeySeed(***)");
    assert!(connects_with(Some(seed)).await);
    let other = TempFile::new(&nkeys::KeyPair::new_user().seed().unwrap());
    assert!(!connects_with(Some(read_seed(&other.0).unwrap())).await);
    assert!(!connects_with(None).await);

    // Checked when read: a seed of another kind, or none at all, is refused by name.
    let account = TempFile::new(&nkeys::KeyPair::new_account().seed().unwrap());
    let err = read_seed(&account.0).unwrap_err();
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
    assert!(err.contains("holds the seed, not the seed"), "{err}");
    assert!(!err.contains(&seed[..20]), "{err}");
    let garbage = TempFile::new("SUnot-a-seed");
    let err = read_seed(&garbage.0).unwrap_err();
    assert!(err.contains("holds no NKey seed"), "{err}");
    assert!(!err.contains("SUnot"), "{err}");
}

#[tokio::test]
async fn a_creds_file_authenticates_against_an_operator_mode_server_and_no_other_does() {
    use pulse_common::nats::NatsCreds;
    use pulse_test_support::operator::{Creds, Operator};
    let operator = Operator::new();
    let nats = pulse_test_support::nats::PrivateNats::in_operator_mode(&operator).await;
    let creds_file = |creds: Creds| {
        let file = TempFile::new("");
        operator.write_creds_of(&file.0, creds);
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
    let mine = creds_file(Creds::Valid);
    let creds = read_creds(&mine.0).unwrap();
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
    // Valid credentials of an account the server does not trust: only the server can tell.
    let foreign = read_creds(&creds_file(Creds::Foreign).0).unwrap();
    assert!(client_with(Some(foreign)).await.is_err());
    assert!(client_with(None).await.is_err());

    // Checked when parsed, refused by name: a file without credentials, and credentials that
    // no server would take.
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
    for (file, says) in [
        (garbage, "holds no NATS user JWT"),
        (creds_file(Creds::Expired), "has expired"),
        (
            creds_file(Creds::OtherUser),
            "of another user than its seed's",
        ),
        (creds_file(Creds::NotUser), "not a user's"),
        (creds_file(Creds::AccountSeed), "not of a user"),
    ] {
        let err = parse(&["--nats-creds-file", &file.0.to_string_lossy()]).unwrap_err();
        assert!(
            err.contains("PULSE_NATS_CREDS_FILE") && err.contains(says),
            "{says}: {err}"
        );
    }
    // The credentials, a seed or a JWT where the file's path was meant: refused without being
    // repeated, however given.
    let text = std::fs::read_to_string(&mine.0).unwrap();
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let jwt = text.lines().nth(1).unwrap().to_owned();
    for secret in [&text, &seed, &jwt] {
        for args in [
            vec!["--nats-creds-file".to_owned(), secret.clone()],
            vec![format!("--nats-creds-file={secret}")],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let err = parse(&args).unwrap_err();
            assert!(err.contains("not the credentials"), "{err}");
            assert!(
                !err.contains(&seed[..12]) && !err.contains(&jwt[..40]),
                "{err}"
            );
            assert!(!err.contains("SU") && !err.contains("eyJ"), "{err}");
        }
    }
    let seed_file = TempFile::new(&seed);
    let seed_path = seed_file.0.to_string_lossy().into_owned();
    let err = parse(&["--nats-creds-file", &path, "--nats-nkey-file", &seed_path]).unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Credentials rotated in place are taken up at the next reconnect, without a restart: the
/// server comes to list only the new user (its configuration reloaded), drops the connection
/// of the old one, and the service reconnects with the seed its file holds now.
#[tokio::test]
async fn a_seed_rotated_in_its_file_is_used_at_the_next_reconnect() {
    let (old, new) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let lists = |user: &nkeys::KeyPair| {
        let public = user.public_key();
        move |_: &std::path::Path| format!("authorization {{ users = [ {{ nkey: {public} }} ] }}\n")
    };
    let nats = pulse_test_support::nats::PrivateNats::configured(lists(&old), &[]).await;
    let file = TempFile::new(&old.seed().unwrap());
    let args = NatsArgs {
        nkey: Some(read_seed(&file.0).unwrap()),
        ..NatsArgs::at(&nats.url)
    };
    let link = pulse_common::nats::connect_in_background(
        &args,
        "test",
        pulse_common::nats::SUBSCRIPTION_CAPACITY,
        || {},
    )
    .await
    .unwrap();
    let state = link.state.clone();
    let within = Duration::from_secs(10);
    let wait = |want: bool| {
        let mut state = state.clone();
        async move {
            tokio::time::timeout(within, state.wait_for(|s| s.connected == want))
                .await
                .unwrap_or_else(|_| panic!("connected == {want} within {within:?}"))
                .unwrap();
        }
    };
    wait(true).await;

    std::fs::write(&file.0, new.seed().unwrap()).unwrap();
    nats.reconfigure(lists(&new));
    wait(false).await;
    wait(true).await;
    // Connected as the new user: the server knows no other.
    pulse_test_support::nats::round_trip(&link.client).await;
}

fn read_seed(path: &std::path::Path) -> Result<pulse_common::nats::NkeySeed, String> {
    pulse_common::nats::seed_file(&path.to_string_lossy())
}

fn read_creds(path: &std::path::Path) -> Result<pulse_common::nats::NatsCreds, String> {
    pulse_common::nats::creds_file(&path.to_string_lossy())
}
