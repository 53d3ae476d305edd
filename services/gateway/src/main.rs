//! `pulse-gateway`: wires configuration, telemetry and the server; the work is in the library.

use anyhow::Context as _;
use clap::Parser;
use pulse_common::telemetry::{self, LogFormat};
use pulse_gateway::GatewayConfig;

#[derive(Parser)]
#[command(name = "pulse-gateway", version, about)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "PULSE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    #[command(flatten)]
    config: GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(code) = pulse_common::healthcheck::from_args("PULSE_GATEWAY_ADDR", "0.0.0.0:8081") {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let _telemetry = telemetry::init("pulse-gateway", cli.log_format)?;
    cli.config.validate()?;
    let listener = listen(cli.config.addr)
        .with_context(|| format!("cannot listen on PULSE_GATEWAY_ADDR={}", cli.config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    pulse_gateway::run(cli.config, listener, pulse_common::shutdown::signal()).await
}

/// Pending connections the kernel may queue before the gateway accepts them (capped by
/// `net.core.somaxconn`). Tokio's default of 1024 overflows when thousands of clients
/// reconnect at once, and each refused SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
