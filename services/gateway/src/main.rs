//! `pulse-gateway`: wires configuration, telemetry and the server; the work is in the library.

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
    let listener = pulse_common::startup::bind(cli.config.addr, "PULSE_GATEWAY_ADDR")?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    pulse_gateway::run(cli.config, listener, pulse_common::shutdown::signal()).await
}
