//! `eddy bench join`: joins end to end from the input topics to the output topic, a task per
//! input partition on `--threads` stream threads, with their state in RocksDB.
//!
//! `--kind stream-table` (the default): `--records` stream records, each looking up one of
//! `--table-rows` table rows (read into the join's copy of the table before the clock starts):
//!
//! ```sql
//! CREATE STREAM OUTPUT AS SELECT c.K, c.V, u.NAME FROM CLICKS c JOIN USERS u ON c.K = u.K;
//! ```
//!
//! `--kind stream-stream`: `--records` records in all, half on each side, with the same key and
//! time for the i-th record of each side (keys repeat every `--keys` records, time advances 10
//! records per ms, so each record has exactly one match in the window):
//!
//! ```sql
//! CREATE STREAM OUTPUT AS SELECT l.K, l.V AS LV, r.V AS RV
//!   FROM LEFT_S l JOIN RIGHT_S r WITHIN 1 MINUTE GRACE PERIOD 1 MINUTE ON l.K = r.K;
//! ```
//!
//! Both sides are appended in chunks of a second of event time, each chunk processed before
//! the next is appended, as records arriving together would be.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use eddy_engine::state::StateOptions;
use eddy_log::{Log, Record};
use eddy_sql::{parse_statements, Session};

use crate::progress;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    StreamTable,
    StreamStream,
}

#[derive(Args)]
pub struct JoinBenchArgs {
    /// Scratch directory (emptied and removed afterwards).
    #[arg(long, default_value = "./eddy-bench")]
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "stream-table")]
    kind: Kind,
    /// Input records (stream records; for stream-stream, both sides together).
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Table rows (stream-table).
    #[arg(long, default_value_t = 1_000_000)]
    table_rows: u64,
    /// Distinct keys (stream-stream).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    #[command(flatten)]
    parallelism: super::Parallelism,
}

pub fn run(args: JoinBenchArgs, state: &StateOptions) -> Result<()> {
    super::in_scratch_dir(&args.dir, |log| match args.kind {
        Kind::StreamTable => stream_table(&args, log, state),
        Kind::StreamStream => stream_stream(&args, log, state),
    })
}

fn record(key: String, value: String, timestamp: i64) -> Record {
    Record {
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        timestamp,
        headers: Vec::new(),
    }
}

fn session(
    log: &Log,
    parallelism: &super::Parallelism,
    state: &StateOptions,
    script: &str,
) -> Result<Session> {
    let mut session = parallelism.session(log, state)?;
    for (stmt, text) in parse_statements(script)? {
        session.execute(&stmt, &text)?;
    }
    Ok(session)
}

fn output_records(log: &Log) -> Result<u64> {
    Ok(log
        .topic("OUTPUT")?
        .partitions()
        .iter()
        .map(|p| p.end_offset())
        .sum())
}

fn stream_table(args: &JoinBenchArgs, log: Log, state: &StateOptions) -> Result<()> {
    let mut users = super::Appender::new(super::input_topic(&log, "USERS", &args.parallelism)?);
    let mut clicks = super::Appender::new(super::input_topic(&log, "CLICKS", &args.parallelism)?);
    for i in 0..args.table_rows {
        users.push(record(
            format!("user{i}"),
            format!("{{\"NAME\":\"name {i}\"}}"),
            0,
        ))?;
    }
    users.flush()?;
    let mut session = session(
        &log,
        &args.parallelism,
        state,
        "CREATE TABLE USERS (K STRING PRIMARY KEY, NAME STRING) WITH (kafka_topic='USERS', value_format='JSON');
         CREATE STREAM CLICKS (K STRING KEY, V BIGINT) WITH (kafka_topic='CLICKS', value_format='JSON');",
    )?;
    // The join keeps its own copy of the table: it reads the table before the clock starts.
    for (stmt, text) in parse_statements(
        "CREATE STREAM OUTPUT AS SELECT c.K, c.V, u.NAME FROM CLICKS c JOIN USERS u ON c.K = u.K;",
    )? {
        session.execute(&stmt, &text)?;
    }
    session.run_until_caught_up()?;
    for i in 0..args.records {
        let key = format!("user{}", (i * 7919) % args.table_rows);
        clicks.push(record(
            key,
            format!("{{\"V\":{}}}", i % 1000),
            (i / 10) as i64,
        ))?;
    }
    clicks.flush()?;
    let start = Instant::now();
    progress::run_until_caught_up(&mut session)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "stream-table join: {} records against {} table rows in {secs:.2} s = {:.0} records/s {}, {} joined",
        args.records,
        args.table_rows,
        args.records as f64 / secs,
        args.parallelism.describe(),
        output_records(&log)?
    );
    Ok(())
}

fn stream_stream(args: &JoinBenchArgs, log: Log, state: &StateOptions) -> Result<()> {
    let mut left = super::Appender::new(super::input_topic(&log, "LEFT_S", &args.parallelism)?);
    let mut right = super::Appender::new(super::input_topic(&log, "RIGHT_S", &args.parallelism)?);
    let mut session = session(
        &log,
        &args.parallelism,
        state,
        "CREATE STREAM LEFT_S (K STRING KEY, V BIGINT) WITH (kafka_topic='LEFT_S', value_format='JSON');
         CREATE STREAM RIGHT_S (K STRING KEY, V BIGINT) WITH (kafka_topic='RIGHT_S', value_format='JSON');
         CREATE STREAM OUTPUT AS SELECT l.K, l.V AS LV, r.V AS RV
           FROM LEFT_S l JOIN RIGHT_S r WITHIN 1 MINUTE GRACE PERIOD 1 MINUTE ON l.K = r.K;",
    )?;
    let per_side = args.records / 2;
    // A second of event time per chunk.
    let chunk = 10_000;
    let mut busy = Duration::ZERO;
    let mut i = 0;
    while i < per_side {
        let end = (i + chunk).min(per_side);
        for j in i..end {
            let side = |offset: u64| {
                record(
                    format!("k{}", j % args.keys),
                    format!("{{\"V\":{}}}", j + offset),
                    (j / 10) as i64,
                )
            };
            left.push(side(0))?;
            right.push(side(1))?;
        }
        left.flush()?;
        right.flush()?;
        let start = Instant::now();
        session.run_until_caught_up()?;
        busy += start.elapsed();
        i = end;
    }
    let secs = busy.as_secs_f64();
    println!(
        "stream-stream join: {} records ({per_side} a side) in {secs:.2} s = {:.0} records/s {}, {} joined",
        per_side * 2,
        (per_side * 2) as f64 / secs,
        args.parallelism.describe(),
        output_records(&log)?
    );
    let state_bytes = session.state_bytes_committed();
    println!(
        "state: {:.1} bytes per record committed to RocksDB",
        state_bytes as f64 / (per_side * 2) as f64
    );
    Ok(())
}
