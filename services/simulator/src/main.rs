//! `pulse-simulator`: wires the command line, telemetry and the database; the work is in the
//! library.

use clap::Parser;
use pulse_common::telemetry::{self, LogFormat};
use pulse_simulator::SimulateArgs;

/// Create demo tenants, users and devices, then write telemetry and alerts continuously.
#[derive(Parser)]
#[command(name = "pulse-simulator", version, about)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "PULSE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    #[command(flatten)]
    sim: SimulateArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("pulse-simulator", cli.log_format)?;
    cli.sim.validate()?;
    let pool = pulse_db::lazy_pool(&cli.database_url, 2, None)?;
    pulse_simulator::run(pool, cli.sim, pulse_common::shutdown::signal()).await
}
