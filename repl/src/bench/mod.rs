//! `eddy bench ...`: throughput measurements. Build with `--release` for meaningful figures.

mod aggregate;
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
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Log(args) => log::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Aggregate(args) => aggregate::run(args),
    }
}
