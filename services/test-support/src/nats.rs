//! NATS for tests: the shared server, and private nats-servers for tests that stop, restart or
//! configure theirs (killed when the returned child is dropped).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::env::nats_url;
use crate::{eventually, free_port, unique};

/// Waits until the server has taken everything `client` sent before: its subscriptions are in
/// place there, and its publishes have gone to the subscriptions the server held when it read
/// them. `flush` alone only writes them to the socket, and the server may read another
/// connection's messages first. A message the client sends itself comes back through the
/// server after them.
pub async fn round_trip(client: &async_nats::Client) {
    use futures::StreamExt as _;
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .expect("cannot subscribe");
    client
        .publish(inbox, Default::default())
        .await
        .expect("cannot publish");
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .expect("no round trip through the NATS server within 10 s")
        .expect("the subscription ended");
}

/// A JetStream context for a test's checks, polled until a deadline: each request waits at
/// most 2 s. Without one a request waits the connection's 10 s, and a request the server never
/// answers spends a whole deadline: nats-server 2.9 drops a direct get that arrives while its
/// stream is being created.
pub fn checks(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

/// A client of the shared NATS server.
pub async fn shared() -> async_nats::Client {
    match async_nats::connect(nats_url()).await {
        Ok(client) => client,
        Err(e) => panic!("NATS must be reachable at NATS_URL (run `make test`): {e}"),
    }
}

/// The installed nats-server.
pub fn server_binary() -> &'static str {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("nats-server")
}

/// Starts a private nats-server on 127.0.0.1:`port` with extra `args`; `envs` reach the server
/// (its configuration may read them as `$NAME`). Returns at once: see [`wait_for`].
pub fn start_server(port: u16, args: &[&str], envs: &[(&str, &str)]) -> Child {
    match Command::new(server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "nats-server must be installed (scripts/ensure-nats.sh --with-binary installs it): {e}"
        ),
    }
}

/// Waits until a client can connect to `url` (credentials in the URL are sent).
pub async fn wait_for(url: &str) {
    eventually("private NATS up", Duration::from_secs(10), || async move {
        connect(url).await.is_ok()
    })
    .await;
}

/// Waits until a nats-server accepts TCP connections on `port`: for a server whose users may
/// all need credentials, so that no client is connected to find out.
pub async fn wait_listening(port: u16) {
    eventually("nats-server listening", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

/// Waits until the nats-server `child` listens on `port` as `name` (the INFO it sends first,
/// before any credentials, names it). A port picked free can be taken by another process
/// before the server binds it; a client would then reach that other process, another test's
/// server say. The error says that the server exited instead.
async fn wait_ours(child: &mut Child, port: u16, name: &str) -> Result<(), String> {
    let within = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "nats-server {name} exited at start ({status}): port {port} taken?"
            ));
        }
        if server_name(port).await.as_deref() == Some(name) {
            return Ok(());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server {name} not listening on port {port} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `server_name` of the nats-server listening on `port`, from the INFO it sends first.
async fn server_name(port: u16) -> Option<String> {
    use tokio::io::AsyncBufReadExt as _;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut info = String::new();
    let mut reader = tokio::io::BufReader::new(stream);
    tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut info))
        .await
        .ok()?
        .ok()?;
    let info: serde_json::Value = serde_json::from_str(info.strip_prefix("INFO ")?.trim()).ok()?;
    info["server_name"].as_str().map(str::to_owned)
}

/// Connects to `url` sending the credentials written in it, as the services do.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    pulse_common::nats::with_url_credentials(async_nats::ConnectOptions::new(), url)
        .connect(url)
        .await
}

/// A nats-server of the test's own, to stop and start again on the same port and store (so
/// it comes back with what it had stored), or to hang; killed, and its store removed, on drop.
/// A test that fails shows the end of the server's log (every run of it) in its output.
pub struct PrivateNats {
    pub url: String,
    port: u16,
    store: PathBuf,
    /// Where the server logs, across restarts (nats-server appends).
    log: PathBuf,
    /// The configuration file it runs with, when the test wrote one ([`PrivateNats::configured`]).
    conf: Option<PathBuf>,
    envs: Vec<(String, String)>,
    /// Its `server_name`, by which [`wait_ours`] tells it from another process on its port.
    name: String,
    server: Option<Child>,
}

impl PrivateNats {
    /// A server with JetStream, once it accepts connections.
    pub async fn start() -> PrivateNats {
        let mut nats = PrivateNats::stopped();
        nats.first_start(true).await;
        nats
    }

    /// A server without JetStream (as a cluster still electing, or one without it enabled),
    /// once it accepts connections; [`PrivateNats::start_again`] brings JetStream.
    pub async fn without_jetstream() -> PrivateNats {
        let mut nats = PrivateNats::stopped();
        nats.first_start(false).await;
        nats
    }

    /// A server run with the configuration `config` writes, given the folder it may store in
    /// (JetStream is on only where the configuration turns it on), once it accepts
    /// connections; `envs` reach the server (`$NAME` in the configuration). The test may change
    /// the configuration while the server runs: [`PrivateNats::reconfigure`].
    pub async fn configured(
        config: impl FnOnce(&Path) -> String,
        envs: &[(&str, &str)],
    ) -> PrivateNats {
        let mut nats = PrivateNats::stopped();
        let conf = std::env::temp_dir().join(format!("{}.conf", unique("pulse-nats")));
        nats.conf = Some(conf);
        nats.write_conf(config);
        nats.envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        nats.first_start(true).await;
        nats
    }

    /// A server with JetStream that talks TLS only, with a certificate `pki` signed for the
    /// loopback address; with `verify_clients`, it also requires of every client a
    /// certificate `pki` signed.
    pub async fn with_tls(pki: &crate::tls::TestPki, verify_clients: bool) -> PrivateNats {
        let server = pki.server();
        let ca = verify_clients.then(|| pki.ca_file());
        PrivateNats::configured(
            |store| jetstream_with_tls(store, &server, ca.as_deref()),
            &[],
        )
        .await
    }

    /// A server with JetStream in operator mode (decentralized JWT authentication), trusting
    /// `operator`: only users with credentials its account issued connect.
    pub async fn in_operator_mode(operator: &crate::operator::Operator) -> PrivateNats {
        let trust = operator.server_config();
        PrivateNats::configured(
            |store| {
                format!(
                    "jetstream {{ store_dir: {:?} }}\n{trust}",
                    store.to_string_lossy()
                )
            },
            &[],
        )
        .await
    }

    /// Writes the configuration `config` makes (given the store folder) and has the server
    /// reload it (SIGHUP), as an operator would.
    pub fn reconfigure(&self, config: impl FnOnce(&Path) -> String) {
        self.write_conf(config);
        crate::signal(self.pid(), "HUP");
    }

    /// [`PrivateNats::url`] with a user's credentials in it.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Removes `stream`'s message files from under the running server (global account), as
    /// a failing disk would, or the removal of a deleted stream's files still under way when
    /// one of the same name is created. Once the server closes the files it holds open (a few
    /// seconds), every write to the stream fails: JetStream error 10077.
    pub fn remove_stored_messages(&self, stream: &str) {
        let msgs = self
            .store
            .join("jetstream/$G/streams")
            .join(stream)
            .join("msgs");
        if let Err(e) = std::fs::remove_dir_all(&msgs) {
            panic!("cannot remove {}: {e}", msgs.display());
        }
    }

    fn write_conf(&self, config: impl FnOnce(&Path) -> String) {
        let conf = self.conf.as_ref().expect("a configured server");
        let config = format!(
            "server_name: \"{}\"\nlog_file: {:?}\n{}",
            self.name,
            self.log.to_string_lossy(),
            config(&self.store)
        );
        if let Err(e) = std::fs::write(conf, config) {
            panic!("cannot write {}: {e}", conf.display());
        }
    }

    fn stopped() -> PrivateNats {
        let port = free_port();
        let store = std::env::temp_dir().join(unique("pulse-nats"));
        PrivateNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            log: store.with_extension("log"),
            store,
            conf: None,
            envs: Vec::new(),
            name: unique("pulse-t-nats"),
            server: None,
        }
    }

    /// Starts the server for the first time; when another process took its port first, on
    /// another free port (three tries).
    async fn first_start(&mut self, jetstream: bool) {
        let mut attempt = 1;
        while let Err(e) = self.launch(jetstream).await {
            assert!(attempt < 3, "{e} ({attempt} times)");
            eprintln!("{e}: starting it on another port");
            attempt += 1;
            self.port = free_port();
            self.url = format!("nats://127.0.0.1:{}", self.port);
        }
    }

    /// Starts the server (stopped first if running) on its port, with JetStream (unless
    /// `jetstream` is false) or with its configuration, once it listens there.
    async fn launch(&mut self, jetstream: bool) -> Result<(), String> {
        self.stop().await;
        let store = self.store.to_string_lossy().into_owned();
        let conf = self.conf.as_ref().map(|c| c.to_string_lossy().into_owned());
        let log = self.log.to_string_lossy().into_owned();
        // A configured server has its name and log in its configuration: a reload refuses a
        // name given on the command line, which its configuration lacks.
        let mut args = Vec::new();
        match &conf {
            Some(conf) => args.extend(["-c", conf]),
            None => {
                args.extend(["--server_name", &self.name, "-l", &log]);
                if jetstream {
                    args.extend(["-js", "-sd", &store]);
                }
            }
        }
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut server = start_server(self.port, &args, &envs);
        let listening = wait_ours(&mut server, self.port, &self.name).await;
        self.server = Some(server);
        listening
    }

    /// Kills the server and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.start_kill().expect("kill the private nats-server");
            server
                .wait()
                .await
                .expect("wait for the private nats-server to end");
        }
    }

    /// Starts the server (stopped first if running) on the same port and store, with JetStream
    /// or with its configuration.
    pub async fn start_again(&mut self) {
        if let Err(e) = self.launch(true).await {
            panic!("{e}: another process took it while the server was stopped");
        }
    }

    /// Starts the server again (stopped first if running) on the same port, with its store
    /// emptied: a restart that lost its storage.
    pub async fn start_again_empty(&mut self) {
        self.stop().await;
        if let Err(e) = std::fs::remove_dir_all(&self.store)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            panic!("cannot empty {}: {e}", self.store.display());
        }
        self.start_again().await;
    }

    /// Freezes the server (SIGSTOP): its connections stay open and nothing is answered, as
    /// with a hung server, until [`PrivateNats::resume`].
    pub fn pause(&self) {
        crate::stop_process(self.pid());
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        crate::signal(self.pid(), "CONT");
    }

    fn pid(&self) -> u32 {
        self.server
            .as_ref()
            .and_then(Child::id)
            .expect("the server runs")
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
        }
        if std::thread::panicking() {
            show_log_end(&self.name, &self.log);
        }
        let _ = std::fs::remove_dir_all(&self.store);
        let _ = std::fs::remove_file(&self.log);
        if let Some(conf) = &self.conf {
            let _ = std::fs::remove_file(conf);
        }
    }
}

/// Prints the last lines of a server's log to stderr, where the test's output shows them.
pub(crate) fn show_log_end(name: &str, log: &Path) {
    const LINES: usize = 200;
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LINES);
    eprintln!(
        "---- nats-server {name}: its log, last {} of {} lines ----",
        lines.len() - from,
        lines.len()
    );
    for line in &lines[from..] {
        eprintln!("{line}");
    }
    eprintln!("---- end of nats-server {name}'s log ----");
}

/// A NATS configuration with JetStream stored in `store`, an `admin` user (password `admin`)
/// allowed everything, and `user` (its name as password) whose publish permission is
/// `publish`, an `allow: [...]` or `deny: [...]` clause, subscribing to anything: for tests
/// that take a JetStream API away from one service, and give it back with a reload.
pub fn jetstream_with_user(store: &Path, user: &str, publish: &str) -> String {
    format!(
        r#"jetstream {{ store_dir: {:?} }}
accounts {{
  PULSE {{
    jetstream: enabled
    users: [
      {{ user: admin, password: admin }}
      {{ user: {user}, password: {user}, permissions: {{ publish: {{ {publish} }}, subscribe: {{ allow: [">"] }} }} }}
    ]
  }}
}}
"#,
        store.to_string_lossy()
    )
}

/// A NATS configuration with JetStream stored in `store` that talks TLS only, with the
/// certificate `server`; with `clients_of`, it also requires of every client a certificate
/// signed by the authority in that file.
fn jetstream_with_tls(
    store: &Path,
    server: &crate::tls::CertFiles,
    clients_of: Option<&Path>,
) -> String {
    let verify = match clients_of {
        Some(ca) => format!("ca_file: {:?}\n  verify: true", ca.to_string_lossy()),
        None => String::new(),
    };
    format!(
        "jetstream {{ store_dir: {:?} }}\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  {verify}\n  timeout: 2\n}}\n",
        store.to_string_lossy(),
        server.cert.to_string_lossy(),
        server.key.to_string_lossy(),
    )
}
