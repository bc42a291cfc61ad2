//! `eddy bench query`: a filter and projection over JSON records already in the log, end to end
//! from the input topic to the output topic, a task per input partition on `--threads`
//! stream threads.
//!
//! Records look like
//! `{"ID":123,"NAME":"user_123","AMOUNT":61.5,"COUNTRY":"GB","NOTE":"order placed via web shop"}`
//! (about 100 bytes); the query keeps about half of them:
//!
//! ```sql
//! CREATE STREAM OUTPUT AS SELECT ID, NAME, AMOUNT * 2 AS DOUBLED FROM INPUT WHERE AMOUNT > 50;
//! ```

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
pub struct QueryBenchArgs {
    /// Scratch directory (emptied and removed afterwards).
    #[arg(long, default_value = "./eddy-bench")]
    dir: PathBuf,
    /// Input records.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    #[command(flatten)]
    parallelism: super::Parallelism,
}

const COUNTRIES: [&str; 8] = ["GB", "DE", "FR", "US", "JP", "BR", "IN", "NG"];

pub fn run(args: QueryBenchArgs, state: &StateOptions) -> Result<()> {
    super::in_scratch_dir(&args.dir, |log| measure(&args, log, state))
}

fn measure(args: &QueryBenchArgs, log: Log, state: &StateOptions) -> Result<()> {
    let mut input = super::Appender::new(super::input_topic(&log, "INPUT", &args.parallelism)?);
    let start = Instant::now();
    let mut bytes = 0u64;
    for i in 0..args.records {
        let value = format!(
            r#"{{"ID":{i},"NAME":"user_{}","AMOUNT":{}.5,"COUNTRY":"{}","NOTE":"order placed via web shop"}}"#,
            i % 100_000,
            (i * 7919) % 100,
            COUNTRIES[(i % 8) as usize]
        );
        bytes += value.len() as u64;
        input.push(Record {
            key: None,
            value: Some(Bytes::from(value)),
            timestamp: i as i64,
            headers: Vec::new(),
        })?;
    }
    input.flush()?;
    println!(
        "wrote {} records ({:.1} bytes each) in {:.1} s",
        args.records,
        bytes as f64 / args.records as f64,
        start.elapsed().as_secs_f64()
    );

    let mut session = args.parallelism.session(&log, state)?;
    let script = "CREATE STREAM INPUT (ID BIGINT, NAME STRING, AMOUNT DOUBLE, COUNTRY STRING, NOTE STRING) WITH (kafka_topic='INPUT', value_format='JSON');
                  CREATE STREAM OUTPUT AS SELECT ID, NAME, AMOUNT * 2 AS DOUBLED FROM INPUT WHERE AMOUNT > 50;";
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
    println!(
        "query: {} records in {secs:.2} s = {:.0} records/s {} ({:.1} MB/s of input), {out} written",
        args.records,
        args.records as f64 / secs,
        args.parallelism.describe(),
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
