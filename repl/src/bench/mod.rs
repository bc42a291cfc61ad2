//! `eddy bench ...`: throughput measurements. Build with `--release` for meaningful figures.

mod aggregate;
mod join;
mod log;
mod query;

use anyhow::Result;
use clap::{Args, Subcommand};

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

/// Runs a benchmark; the queries' state stores get `state`'s budget (`--state-memory-mb`).
pub fn run(cmd: BenchCommand, state: &eddy_engine::state::StateOptions) -> Result<()> {
    match cmd {
        BenchCommand::Log(args) => log::run(args),
        BenchCommand::Query(args) => query::run(args, state),
        BenchCommand::Aggregate(args) => aggregate::run(args, state),
        BenchCommand::Join(args) => join::run(args, state),
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

/// How a benchmark's query runs: on how many stream threads, over how many partitions (a
/// task per partition).
#[derive(Args, Clone, Copy)]
pub struct Parallelism {
    /// Stream threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Partitions of the input topics: the query runs as a task per partition.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
}

impl Parallelism {
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(eddy_engine::runtime::default_threads)
    }

    /// A session on `log` that reads from the earliest offsets and runs its queries on this
    /// many threads.
    /// A session on the scratch log, its state stores within `state`'s budget
    /// (`--state-memory-mb`).
    pub fn session(
        &self,
        log: &eddy_log::Log,
        state: &eddy_engine::state::StateOptions,
    ) -> Result<eddy_sql::Session> {
        let mut session = eddy_sql::Session::open_with(log.clone(), state.clone())?;
        session
            .properties
            .insert("auto.offset.reset".into(), "earliest".into());
        session
            .properties
            .insert(eddy_sql::STREAM_THREADS.into(), self.threads().to_string());
        Ok(session)
    }

    /// How the figures were made, for the result line.
    pub fn describe(&self) -> String {
        let threads = self.threads();
        let plural = if threads == 1 { "" } else { "s" };
        format!(
            "on {threads} thread{plural}, {} partitions",
            self.partitions
        )
    }
}

/// A new topic with large segments, as many partitions as `parallelism` says.
fn input_topic(
    log: &eddy_log::Log,
    name: &str,
    parallelism: &Parallelism,
) -> Result<std::sync::Arc<eddy_log::Topic>> {
    Ok(log.create_topic(
        name,
        eddy_log::TopicConfig {
            segment_bytes: 1 << 30,
            ..eddy_log::TopicConfig::with_partitions(parallelism.partitions)
        },
    )?)
}

/// Appends records to a topic's partitions in batches: keyed records where their key goes,
/// others round robin.
struct Appender {
    topic: std::sync::Arc<eddy_log::Topic>,
    batches: Vec<Vec<eddy_log::Record>>,
    next: usize,
}

impl Appender {
    const BATCH: usize = 10_000;

    fn new(topic: std::sync::Arc<eddy_log::Topic>) -> Appender {
        let n = topic.partition_count() as usize;
        Appender {
            topic,
            batches: vec![Vec::with_capacity(Self::BATCH); n],
            next: 0,
        }
    }

    fn push(&mut self, record: eddy_log::Record) -> Result<()> {
        let p = match &record.key {
            Some(k) => self.topic.partition_for(Some(k)) as usize,
            None => {
                self.next = (self.next + 1) % self.batches.len();
                self.next
            }
        };
        self.batches[p].push(record);
        if self.batches[p].len() >= Self::BATCH {
            self.flush_partition(p)?;
        }
        Ok(())
    }

    fn flush_partition(&mut self, p: usize) -> Result<()> {
        if !self.batches[p].is_empty() {
            self.topic
                .partition(p as u32)?
                .append_unacknowledged(&self.batches[p])?;
            self.batches[p].clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for p in 0..self.batches.len() {
            self.flush_partition(p)?;
        }
        Ok(())
    }
}

/// The process's peak resident set (Linux's `VmHWM`), in MiB; `None` where it cannot be read.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
