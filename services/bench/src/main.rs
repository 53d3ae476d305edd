//! `pulse-bench`: parses the command line, builds a small runtime, and hands over to the
//! library; with `--processes N` it runs itself as N shards and merges their reports.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use pulse_bench::{BenchConfig, Report};
use pulse_common::telemetry::LogArgs;

#[derive(Parser)]
#[command(name = "pulse-bench", version, about, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,

    /// Worker threads of the client runtime; 1 runs every client on one thread (the
    /// publisher always has a thread of its own). Two keep up with a 50,000 frames/s burst on
    /// a 2-core box where one falls behind.
    #[arg(long, env = "PULSE_BENCH_THREADS", default_value_t = 2, global = true)]
    threads: usize,

    /// Print no table (shards started by `--processes` use this).
    #[arg(long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run a scenario.
    Run(Box<BenchConfig>),
    /// Merge the `--json` reports of the shards of one run and print the table.
    Merge {
        files: Vec<PathBuf>,
        /// Write the merged report here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = cli.log.init("pulse-bench")?;
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    let (report, json) = match cli.command {
        Command::Merge { files, json } => (pulse_bench::shards::merge_files(&files)?, json),
        Command::Run(config) => {
            let json = config.json.clone();
            (runtime.block_on(run(*config))?, json)
        }
    };
    if !cli.quiet {
        println!("{}", report.table());
    }
    if let Some(path) = json {
        write_json(&report, &path)?;
    }
    Ok(())
}

async fn run(mut config: BenchConfig) -> anyhow::Result<Report> {
    config.validate()?;
    let processes = config.process_count();
    if processes > 1 && config.shards == 1 {
        let run_id = config
            .run_id
            .clone()
            .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
        let dir = std::env::temp_dir().join(format!("pulse-bench-{run_id}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        tracing::info!(processes, run = %run_id, "running as several processes");
        let report = pulse_bench::shards::run_shards(&args, processes, &run_id, &dir).await?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(report);
    }
    config.processes = 1;
    Ok(pulse_bench::run(config).await?)
}

fn write_json(report: &Report, path: &PathBuf) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
