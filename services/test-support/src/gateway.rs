//! A gateway running inside the test process on a port of its own, on the shared NATS, with
//! the test [`SECRET`]: what the gateway's, the web service's and the bench's tests connect
//! their clients to. It is told to stop when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use pulse_gateway::GatewayConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jwt::{SECRET, viewer_token};
use crate::ws::{self, Client};
use crate::{eventually, nats_url, parse_config};

/// The gateway's configuration with the test secret, the shared NATS and `extra` flags.
pub fn config(extra: &[&str]) -> GatewayConfig {
    let mut args = vec!["pulse-gateway", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    let mut config: GatewayConfig = parse_config(&args);
    config.nats.url = nats_url();
    config
}

/// A gateway on 127.0.0.1 in this process.
pub struct Gateway {
    pub addr: SocketAddr,
    /// Where the ops endpoints are: `addr` unless the configuration gave them their own.
    pub ops: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts a gateway with `config` on 127.0.0.1:0 and waits until it is ready.
pub async fn spawn(config: GatewayConfig) -> Gateway {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("cannot bind a port on 127.0.0.1: {e}"),
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let stop = CancellationToken::new();
    let ops = config.ops_addr;
    let task = tokio::spawn(pulse_gateway::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let ops = ops.unwrap_or(addr);
    assert_ne!(
        ops.port(),
        0,
        "give the ops address a port of its own (free_port)"
    );
    wait_ready(ops).await;
    Gateway {
        addr,
        ops,
        stop,
        task: Some(task),
    }
}

/// Waits until the gateway at `addr` answers `/readyz` with success.
pub async fn wait_ready(addr: SocketAddr) {
    eventually(
        &format!("gateway at {addr} ready"),
        Duration::from_secs(10),
        || async move {
            reqwest::get(format!("http://{addr}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
}

impl Gateway {
    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v2/ws", self.addr)
    }

    /// The WebSocket endpoint with `token` in the query, as browsers send it.
    pub fn url(&self, token: &str) -> String {
        format!("{}?token={token}", self.ws_url())
    }

    /// A client connected as a viewer of `tenant` (a token valid for a minute).
    pub async fn viewer(&self, tenant: &str) -> Client {
        ws::connect(&self.url(&viewer_token(tenant, 60))).await
    }

    /// The gateway's Prometheus scrape.
    pub async fn metrics(&self) -> String {
        crate::scrape(self.ops).await
    }

    /// Asks the gateway to drain, as SIGTERM does.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Asks the gateway to drain and returns its run's result once it has stopped.
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().expect("a gateway is stopped once");
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("the gateway task failed: {e}"),
            Err(_) => panic!("the gateway did not stop within 20 s"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
