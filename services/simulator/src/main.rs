//! `pulse-simulator`: wires the command line, telemetry and the database; the work is in the
//! library.

use clap::Parser;
use pulse_common::telemetry::LogArgs;
use pulse_simulator::SimulateArgs;

/// Create demo tenants, users and devices, then write telemetry and alerts continuously.
#[derive(Parser)]
#[command(name = "pulse-simulator", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    database: pulse_db::DatabaseArgs,

    #[command(flatten)]
    sim: SimulateArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = cli.log.init("pulse-simulator")?;
    cli.sim.validate()?;
    let pool = pulse_db::lazy_pool(&cli.database.url, 2, None)?;
    pulse_simulator::run(pool, cli.sim, pulse_common::shutdown::signal()).await
}
