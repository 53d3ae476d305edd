//! `pulse-poller`: wires configuration, telemetry and the server; the work is in the library.

use clap::{Parser, Subcommand};
use pulse_common::healthcheck::exit_if_asked;
use pulse_common::telemetry::LogArgs;
use pulse_poller::PollerConfig;
use pulse_poller::config::DEFAULT_ADDR;

#[derive(Parser)]
#[command(
    name = "pulse-poller",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: Option<PollerConfig>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start; boxing would buy nothing
enum Command {
    /// Publish changes (the default when no command is given).
    Run(PollerConfig),
    /// Apply the database migrations once PostgreSQL answers, then exit. Safe to run any
    /// number of times.
    Migrate(pulse_poller::migrate::MigrateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    exit_if_asked(&["PULSE_POLLER_ADDR"], DEFAULT_ADDR);
    let cli = Cli::parse();
    let _telemetry = cli.log.init("pulse-poller")?;
    match (cli.command, cli.run) {
        (Some(Command::Run(config)), _) | (None, Some(config)) => run(config).await,
        (Some(Command::Migrate(args)), _) => {
            pulse_poller::migrate::run(&args).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        (None, None) => anyhow::bail!("DATABASE_URL is required"),
    }
}

async fn run(config: PollerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let listener = pulse_common::startup::bind(config.addr, "PULSE_POLLER_ADDR")?;
    tracing::info!(addr = %listener.local_addr()?, "ops endpoints listening");
    pulse_poller::run(config, listener, pulse_common::shutdown::signal()).await
}
