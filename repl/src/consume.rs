//! `eddy consume TOPIC`: print records, one per line.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use eddy_log::{AssignmentStrategy, Consumer, ConsumerRecord, Log, OffsetReset, TopicPartition};

#[derive(Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the first record (with --group: when the group has committed nothing).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    offset: Option<u64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Read as a member of this consumer group, committing offsets as records are printed and
    /// resuming from them next time.
    #[arg(long, conflicts_with = "partition")]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end of the log.
    #[arg(long)]
    follow: bool,
    /// Print the key and a tab before the value.
    #[arg(long)]
    print_key: bool,
    /// Print the timestamp (ms) and a tab before the key and value.
    #[arg(long)]
    print_timestamp: bool,
}

pub fn run(log: &Log, args: ConsumeArgs) -> Result<()> {
    let topic = log.topic(&args.topic)?;
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = match &args.group {
        Some(g) => Consumer::with_group(log, g, &[&args.topic], reset, AssignmentStrategy::Range)?,
        None => {
            let mut c = Consumer::new(log, &[&args.topic], reset)?;
            if let Some(p) = args.partition {
                topic.partition(p)?;
                c.assign(vec![TopicPartition::new(&args.topic, p)])?;
            }
            c
        }
    };
    if let Some(offset) = args.offset {
        for tp in consumer.assignment().to_vec() {
            let p = topic.partition(tp.partition)?;
            if offset > p.end_offset() {
                bail!(
                    "offset {offset} is past the end of {}/{} (end offset {})",
                    tp.topic,
                    tp.partition,
                    p.end_offset()
                );
            }
            consumer.seek(&tp, offset);
        }
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut printed = 0u64;
    // Without --follow, stop once a poll finds nothing new: the end of the log as of then.
    let wait = if args.follow {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    loop {
        let records = consumer.poll(wait)?;
        if records.is_empty() {
            if args.follow {
                continue;
            }
            break;
        }
        let room = args.max_messages.map_or(u64::MAX, |m| m - printed) as usize;
        let take = records.len().min(room);
        for r in &records[..take] {
            print_record(&mut out, r, &args)?;
        }
        printed += take as u64;
        if let Some(unprinted) = records.get(take) {
            // Stopped mid-batch: what we did not print stays for the next reader.
            consumer.seek(
                &TopicPartition::new(unprinted.topic.as_ref(), unprinted.partition),
                unprinted.offset,
            );
        }
        out.flush()?;
        consumer.commit()?;
        if args.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_record(
    out: &mut impl Write,
    r: &ConsumerRecord,
    args: &ConsumeArgs,
) -> std::io::Result<()> {
    if args.print_timestamp {
        write!(out, "{}\t", r.record.timestamp)?;
    }
    if args.print_key {
        write_bytes(out, r.record.key.as_deref())?;
        out.write_all(b"\t")?;
    }
    write_bytes(out, r.record.value.as_deref())?;
    out.write_all(b"\n")
}

fn write_bytes(out: &mut impl Write, b: Option<&[u8]>) -> std::io::Result<()> {
    out.write_all(b.unwrap_or(b"null"))
}
