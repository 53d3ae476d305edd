//! `pulse-web`: wires configuration, telemetry and the server; the work is in the library.

use clap::Parser;
use pulse_common::healthcheck::exit_if_asked;
use pulse_common::telemetry::LogArgs;
use pulse_web::WebConfig;
use pulse_web::config::DEFAULT_OPS_ADDR;

#[derive(Parser)]
#[command(name = "pulse-web", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    config: WebConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    exit_if_asked(&["PULSE_WEB_OPS_ADDR"], DEFAULT_OPS_ADDR);
    let cli = Cli::parse();
    let _telemetry = cli.log.init("pulse-web")?;
    cli.config.validate()?;
    let listener = pulse_common::startup::bind(cli.config.addr, "PULSE_WEB_ADDR")?;
    let ops_listener = pulse_common::startup::bind(cli.config.ops_addr, "PULSE_WEB_OPS_ADDR")?;
    tracing::info!(
        addr = %listener.local_addr()?,
        ops = %ops_listener.local_addr()?,
        "listening"
    );
    pulse_web::run(
        cli.config,
        listener,
        ops_listener,
        pulse_common::shutdown::signal(),
    )
    .await
}
