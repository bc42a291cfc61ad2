//! `eddy bench ...`: throughput measurements. Build with `--release` for meaningful figures.

mod aggregate;
mod join;
mod log;
mod query;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Append and read throughput of the embedded log under each fsync policy.
    Log(log::LogBenchArgs),
    /// A stateless query (filter and projection) over JSON records, from log to log.
    Query(query::QueryBenchArgs),
    /// A tumbling-window COUNT and SUM by key, with state in RocksDB, from log to log.
    Aggregate(aggregate::AggregateBenchArgs),
    /// A stream-table join (10M records against a 1M-row table) or a stream-stream join with a
    /// one-minute window, with state in RocksDB, from log to log.
    Join(join::JoinBenchArgs),
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Log(args) => log::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Aggregate(args) => aggregate::run(args),
        BenchCommand::Join(args) => join::run(args),
    }
}

/// Runs `f` on a log in the new scratch directory `dir` (fsync off: the benchmarks measure the
/// engine, not the disk), and removes the directory afterwards.
fn in_scratch_dir(
    dir: &std::path::Path,
    f: impl FnOnce(eddy_log::Log) -> Result<()>,
) -> Result<()> {
    if dir.exists() {
        anyhow::bail!(
            "{} exists; give a new scratch directory with --dir",
            dir.display()
        );
    }
    let options = eddy_log::LogOptions {
        fsync: eddy_log::FsyncPolicy::Never,
        ..eddy_log::LogOptions::default()
    };
    let result = eddy_log::Log::open(dir, options)
        .map_err(anyhow::Error::from)
        .and_then(f);
    std::fs::remove_dir_all(dir).ok();
    result
}

/// Partition 0 of a new one-partition topic `INPUT` with large segments.
fn input_partition(log: &eddy_log::Log) -> Result<std::sync::Arc<eddy_log::Partition>> {
    let input = log.create_topic(
        "INPUT",
        eddy_log::TopicConfig {
            segment_bytes: 1 << 30,
            ..eddy_log::TopicConfig::default()
        },
    )?;
    Ok(input.partition(0)?.clone())
}
