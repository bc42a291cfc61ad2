//! `eddy bench aggregate`: a tumbling-window COUNT and SUM by key, end to end from the input
//! topic to the output topic, a task per input partition on `--threads` stream threads, with
//! its state in RocksDB.
//!
//! Records have a STRING key drawn from `--keys` distinct values and a JSON value `{"V":n}`;
//! event time advances 10 records per millisecond, so a one-minute window holds 600k records.
//!
//! ```sql
//! CREATE TABLE OUTPUT AS SELECT K, COUNT(*) AS N, SUM(V) AS TOTAL
//!   FROM INPUT WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY K;
//! ```
//!
//! Every update is written (EMIT CHANGES), so the output has as many records as the input.
//!
//! With `--repartition` the group is a value column instead (`{"G":"user..","V":n}`, keyed by
//! the record's number), so the rows go through the query's repartition topic first, as
//! ksqlDB's would: `... GROUP BY G`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use eddy_engine::state::StateOptions;
use eddy_log::{Log, Record};
use eddy_sql::parse_statements;

use crate::progress;

#[derive(Args)]
pub struct AggregateBenchArgs {
    /// Scratch directory (emptied and removed afterwards).
    #[arg(long, default_value = "./eddy-bench")]
    dir: PathBuf,
    /// Input records.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Group by a value column, through a repartition topic.
    #[arg(long)]
    repartition: bool,
    #[command(flatten)]
    parallelism: super::Parallelism,
}

pub fn run(args: AggregateBenchArgs, state: &StateOptions) -> Result<()> {
    super::in_scratch_dir(&args.dir, |log| measure(&args, log, state))
}

fn measure(args: &AggregateBenchArgs, log: Log, state: &StateOptions) -> Result<()> {
    let mut input = super::Appender::new(super::input_topic(&log, "INPUT", &args.parallelism)?);
    let start = Instant::now();
    for i in 0..args.records {
        let group = format!("user{}", (i * 7919) % args.keys);
        let (key, value) = match args.repartition {
            false => (group, format!("{{\"V\":{}}}", i % 1000)),
            true => (
                format!("r{i}"),
                format!("{{\"G\":\"{group}\",\"V\":{}}}", i % 1000),
            ),
        };
        input.push(Record {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            timestamp: (i / 10) as i64,
            headers: Vec::new(),
        })?;
    }
    input.flush()?;
    println!(
        "wrote {} records over {} keys in {:.1} s",
        args.records,
        args.keys,
        start.elapsed().as_secs_f64()
    );

    let mut session = args.parallelism.session(&log, state)?;
    let script = match args.repartition {
        false => "CREATE STREAM INPUT (K STRING KEY, V BIGINT) WITH (kafka_topic='INPUT', value_format='JSON');
                  CREATE TABLE OUTPUT AS SELECT K, COUNT(*) AS N, SUM(V) AS TOTAL FROM INPUT WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY K;",
        true => "CREATE STREAM INPUT (K STRING KEY, G STRING, V BIGINT) WITH (kafka_topic='INPUT', value_format='JSON');
                  CREATE TABLE OUTPUT AS SELECT G, COUNT(*) AS N, SUM(V) AS TOTAL FROM INPUT WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY G;",
    };
    for (stmt, text) in parse_statements(script)? {
        session.execute(&stmt, &text)?;
    }
    let start = Instant::now();
    progress::run_until_caught_up(&mut session)?;
    let secs = start.elapsed().as_secs_f64();
    let out: u64 = log
        .topic("OUTPUT")?
        .partitions()
        .iter()
        .map(|p| p.end_offset())
        .sum();
    let state_bytes = session.state_bytes_committed();
    let changelog_bytes: u64 = log
        .topics()
        .iter()
        .filter(|t| t.name().ends_with("-changelog"))
        .flat_map(|t| t.partitions().to_vec())
        .map(|p| p.size_bytes())
        .sum();
    println!(
        "aggregate: {} records in {secs:.2} s = {:.0} records/s {}, {out} updates written",
        args.records,
        args.records as f64 / secs,
        args.parallelism.describe(),
    );
    println!(
        "state: {:.1} bytes per record committed to RocksDB, {:.1} bytes per record to changelogs",
        state_bytes as f64 / args.records as f64,
        changelog_bytes as f64 / args.records as f64,
    );
    if let Some(peak) = super::peak_rss_mib() {
        // The bound that `--state-memory-mb` is for: RocksDB's caches plus what the groups
        // held between commits, whatever the number of keys.
        println!("memory: peak resident set {peak:.0} MiB");
    }
    Ok(())
}
