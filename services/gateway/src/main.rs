//! `pulse-gateway`: wires configuration, telemetry and the server; the work is in the library.

use clap::Parser;
use pulse_common::healthcheck::exit_if_asked;
use pulse_common::telemetry::LogArgs;
use pulse_gateway::GatewayConfig;
use pulse_gateway::config::DEFAULT_ADDR;

#[derive(Parser)]
#[command(name = "pulse-gateway", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    config: GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The ops endpoints are on their own address when one is set.
    exit_if_asked(
        &["PULSE_GATEWAY_OPS_ADDR", "PULSE_GATEWAY_ADDR"],
        DEFAULT_ADDR,
    );
    let cli = Cli::parse();
    let _telemetry = cli.log.init("pulse-gateway")?;
    cli.config.validate()?;
    let listener = pulse_common::startup::bind(cli.config.addr, "PULSE_GATEWAY_ADDR")?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    pulse_gateway::run(cli.config, listener, pulse_common::shutdown::signal()).await
}
