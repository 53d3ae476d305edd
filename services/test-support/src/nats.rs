//! NATS for tests: the shared server, and private nats-servers for tests that stop, restart or
//! configure theirs (killed when the returned child is dropped).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::env::nats_url;
use crate::{eventually, free_port, unique};

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
        Err(e) => panic!("nats-server must be installed (scripts/ensure-nats.sh installs it): {e}"),
    }
}

/// A private nats-server with JetStream storing in `store`, once it accepts connections.
/// Started again on the same port and store, it comes back with what it had stored.
pub async fn start_jetstream(port: u16, store: &Path) -> Child {
    let store = store.to_string_lossy();
    let child = start_server(port, &["-js", "-sd", &store], &[]);
    wait_for(&format!("nats://127.0.0.1:{port}")).await;
    child
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

/// Connects to `url` sending the credentials written in it, as the services do.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    pulse_common::nats::with_url_credentials(async_nats::ConnectOptions::new(), url)
        .connect(url)
        .await
}

/// A nats-server of the test's own, to stop and start again on the same port and store (so
/// it comes back with what it had stored), or to hang; killed, and its store removed, on drop.
pub struct PrivateNats {
    pub url: String,
    port: u16,
    store: PathBuf,
    /// The configuration file it runs with, when the test wrote one ([`PrivateNats::configured`]).
    conf: Option<PathBuf>,
    envs: Vec<(String, String)>,
    server: Option<Child>,
}

impl PrivateNats {
    /// A server with JetStream, once it accepts connections.
    pub async fn start() -> PrivateNats {
        let mut nats = PrivateNats::stopped();
        nats.start_again().await;
        nats
    }

    /// A server without JetStream (as a cluster still electing, or one without it enabled),
    /// once it accepts connections; [`PrivateNats::start_again`] brings JetStream.
    pub async fn without_jetstream() -> PrivateNats {
        let mut nats = PrivateNats::stopped();
        nats.server = Some(start_server(nats.port, &[], &[]));
        wait_for(&nats.url).await;
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
        nats.start_again().await;
        nats
    }

    /// Writes the configuration `config` makes (given the store folder) and has the server
    /// reload it (SIGHUP), as an operator would.
    pub fn reconfigure(&self, config: impl FnOnce(&Path) -> String) {
        self.write_conf(config);
        self.signal("HUP");
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
        if let Err(e) = std::fs::write(conf, config(&self.store)) {
            panic!("cannot write {}: {e}", conf.display());
        }
    }

    fn stopped() -> PrivateNats {
        let port = free_port();
        PrivateNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store: std::env::temp_dir().join(unique("pulse-nats")),
            conf: None,
            envs: Vec::new(),
            server: None,
        }
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
        self.stop().await;
        let Some(conf) = &self.conf else {
            self.server = Some(start_jetstream(self.port, &self.store).await);
            return;
        };
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let conf = conf.to_string_lossy();
        self.server = Some(start_server(self.port, &["-c", &conf], &envs));
        wait_listening(self.port).await;
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
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .server
            .as_ref()
            .and_then(Child::id)
            .expect("the server runs");
        crate::signal(pid, name);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
        if let Some(conf) = &self.conf {
            let _ = std::fs::remove_file(conf);
        }
    }
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
