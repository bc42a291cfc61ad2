//! `eddy produce TOPIC`: one record per line of standard input.

use std::io::{BufRead, IsTerminal};

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use eddy_log::{now_ms, Log, Record, Topic};

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first occurrence of this into key and value; a line without it
    /// has a null key.
    #[arg(long)]
    key_separator: Option<String>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
}

/// Lines are appended in batches of this many when standard input is not a terminal.
const BATCH: usize = 1000;

pub fn run(log: &Log, args: ProduceArgs) -> Result<()> {
    let topic = log.topic(&args.topic)?;
    if let Some(p) = args.partition {
        topic.partition(p)?;
    }
    let stdin = std::io::stdin();
    // Typed lines go out one by one, as a console producer's do; piped input in batches.
    let batch = if stdin.is_terminal() { 1 } else { BATCH };
    let mut pending = Vec::with_capacity(batch);
    let mut appended = 0u64;
    for line in stdin.lock().lines() {
        let line = line?;
        pending.push(to_record(&line, args.key_separator.as_deref()));
        if pending.len() >= batch {
            appended += append(&topic, args.partition, &mut pending)?;
        }
    }
    appended += append(&topic, args.partition, &mut pending)?;
    println!("Appended {appended} record(s) to {}", args.topic);
    Ok(())
}

fn to_record(line: &str, sep: Option<&str>) -> Record {
    let (key, value) = match sep.and_then(|s| line.split_once(s)) {
        Some((k, v)) => (Some(Bytes::copy_from_slice(k.as_bytes())), v),
        None => (None, line),
    };
    Record {
        key,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        timestamp: now_ms(),
        headers: Vec::new(),
    }
}

/// Appends the pending records, each to its partition, and waits for their acknowledgement.
fn append(topic: &Topic, partition: Option<u32>, pending: &mut Vec<Record>) -> Result<u64> {
    let n = topic.partition_count() as usize;
    let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); n];
    for r in pending.drain(..) {
        let p = partition.unwrap_or_else(|| topic.partition_for(r.key.as_deref()));
        by_partition[p as usize].push(r);
    }
    let mut count = 0;
    for (p, records) in by_partition.iter().enumerate() {
        if !records.is_empty() {
            count += topic.partition(p as u32)?.append(records)?.count;
        }
    }
    Ok(count)
}
