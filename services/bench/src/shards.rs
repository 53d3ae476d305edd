//! Running one bench as several processes: each process may hold only ~20,000 open files
//! here, so a run with more connections starts itself once per shard (same arguments, plus
//! `--shard`, `--shards`, `--run-id` and `--json`), waits for them, and merges their reports.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot start shard {0}: {1}")]
    Spawn(usize, std::io::Error),
    #[error("shard {0} failed ({1})")]
    Failed(usize, std::process::ExitStatus),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot parse {0}: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("no reports to merge")]
    Empty,
}

/// Starts `shards` copies of this program with `args` and merges their reports.
pub async fn run_shards(
    args: &[String],
    shards: usize,
    run_id: &str,
    dir: &Path,
) -> Result<Report, ShardError> {
    let exe = std::env::current_exe().map_err(|e| ShardError::Spawn(0, e))?;
    let mut children = Vec::new();
    let mut files = Vec::new();
    for shard in 0..shards {
        let file = dir.join(format!("shard-{shard}.json"));
        let child = tokio::process::Command::new(&exe)
            .args(args)
            .arg("--shard")
            .arg(shard.to_string())
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--run-id")
            .arg(run_id)
            .arg("--processes")
            .arg("1")
            .arg("--json")
            .arg(&file)
            .arg("--quiet")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ShardError::Spawn(shard, e))?;
        children.push(child);
        files.push(file);
    }
    for (shard, mut child) in children.into_iter().enumerate() {
        let status = child
            .wait()
            .await
            .map_err(|e| ShardError::Spawn(shard, e))?;
        if !status.success() {
            return Err(ShardError::Failed(shard, status));
        }
    }
    merge_files(&files)
}

/// Reads and merges JSON reports.
pub fn merge_files(files: &[PathBuf]) -> Result<Report, ShardError> {
    let mut reports = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| ShardError::Read(f.clone(), e))?;
        reports.push(serde_json::from_str(&text).map_err(|e| ShardError::Parse(f.clone(), e))?);
    }
    Report::merge(reports).ok_or(ShardError::Empty)
}
