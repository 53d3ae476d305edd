//! `pulse-poller`: wires configuration, telemetry and the server; the work is in the library.

use clap::{Parser, Subcommand};
use pulse_common::telemetry::{self, LogFormat};
use pulse_poller::PollerConfig;

#[derive(Parser)]
#[command(
    name = "pulse-poller",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "PULSE_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,

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
    /// Apply the database migrations, then exit. Safe to run any number of times.
    Migrate(DatabaseArgs),
}

#[derive(clap::Args)]
struct DatabaseArgs {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(code) = pulse_common::healthcheck::from_args("PULSE_POLLER_ADDR", "0.0.0.0:9090") {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let _telemetry = telemetry::init("pulse-poller", cli.log_format)?;
    match (cli.command, cli.run) {
        (Some(Command::Run(config)), _) | (None, Some(config)) => run(config).await,
        (Some(Command::Migrate(db)), _) => {
            let pool = pulse_db::lazy_pool(&db.database_url, 1, None)?;
            pulse_db::migrate(&pool).await?;
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
