//! NATS for tests: the shared server, and private nats-servers for tests that stop, restart or
//! configure theirs (killed when the returned child is dropped).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::env::nats_url;
use crate::eventually;

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

/// Connects to `url` sending the credentials written in it, as the services do.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    pulse_common::nats::with_url_credentials(async_nats::ConnectOptions::new(), url)
        .connect(url)
        .await
}
