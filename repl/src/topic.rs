//! `eddy topic ...`: topic administration.

use anyhow::Result;
use clap::Subcommand;
use eddy_log::{FsyncPolicy, Log, TopicConfig};

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Keep only the latest record per key.
        #[arg(long)]
        compact: bool,
        /// Delete segments whose newest record is older than this.
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Delete the oldest segments while a partition is larger than this.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Roll segments at this size.
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// always, never, or a group-commit interval such as 5ms (default: 5ms).
        #[arg(long)]
        fsync: Option<FsyncPolicy>,
    },
    /// List topics with their partition counts.
    List,
    /// Show a topic's settings and, per partition, its offsets and size.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Read every partition of a topic and report every damaged range of records.
    Verify { name: String },
    /// Skip a topic's damaged records, so that readers move past them; says what it skipped
    /// and records it in each partition's repairs.log.
    Repair {
        name: String,
        /// Required: skipping damaged records loses them, so it is never done implicitly.
        #[arg(long)]
        skip_damaged: bool,
    },
}

pub fn run(log: &Log, cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            compact,
            retention_ms,
            retention_bytes,
            segment_bytes,
            fsync,
        } => {
            let defaults = TopicConfig::default();
            let config = TopicConfig {
                partitions,
                compact,
                retention_ms,
                retention_bytes,
                segment_bytes: segment_bytes.unwrap_or(defaults.segment_bytes),
                fsync,
                ..defaults
            };
            log.create_topic(&name, config)?;
            println!("Created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            for t in log.topics() {
                println!("{}\t{} partition(s)", t.name(), t.partition_count());
            }
        }
        TopicCommand::Describe { name } => {
            let t = log.topic(&name)?;
            let c = t.config();
            let fsync = t.partitions()[0].fsync_policy();
            println!(
                "Topic: {name}  partitions: {}  cleanup: {}  retention.ms: {}  retention.bytes: {}  fsync: {fsync}",
                c.partitions,
                if c.compact { "compact" } else { "delete" },
                c.retention_ms.map_or("none".into(), |v| v.to_string()),
                c.retention_bytes.map_or("none".into(), |v| v.to_string()),
            );
            println!(
                "{:>9}  {:>12}  {:>12}  {:>14}  {:>8}",
                "partition", "start", "end", "bytes", "segments"
            );
            for p in t.partitions() {
                println!(
                    "{:>9}  {:>12}  {:>12}  {:>14}  {:>8}",
                    p.id(),
                    p.start_offset(),
                    p.end_offset(),
                    p.size_bytes(),
                    p.segment_count()
                );
            }
        }
        TopicCommand::Delete { name } => {
            log.delete_topic(&name)?;
            println!("Deleted topic {name}");
        }
        TopicCommand::Verify { name } => {
            let t = log.topic(&name)?;
            let mut damaged = 0;
            for p in t.partitions() {
                for d in p.verify()? {
                    print_damage(&d);
                    damaged += 1;
                }
            }
            if damaged > 0 {
                anyhow::bail!(
                    "topic {name} has {damaged} damaged range(s); `eddy topic repair {name} \
                     --skip-damaged` skips them (their records are lost)"
                );
            }
            println!("Topic {name}: every record verifies");
        }
        TopicCommand::Repair { name, skip_damaged } => {
            if !skip_damaged {
                anyhow::bail!(
                    "repairing skips damaged records, which loses them: pass --skip-damaged \
                     to do so (`eddy topic verify {name}` lists them)"
                );
            }
            let t = log.topic(&name)?;
            let mut skipped = 0;
            for p in t.partitions() {
                for d in p.repair()? {
                    print!("Skipped: ");
                    print_damage(&d);
                    skipped += 1;
                }
            }
            match skipped {
                0 => println!("Topic {name}: nothing damaged, nothing skipped"),
                n => println!("Topic {name}: skipped {n} damaged range(s); see repairs.log in each partition's directory"),
            }
        }
    }
    Ok(())
}

fn print_damage(d: &eddy_log::Damage) {
    let records = d.offsets.end - d.offsets.start;
    println!(
        "partition {}: offsets {}..{} ({records} record(s)) damaged in {} at bytes {}..{}: {}",
        d.partition,
        d.offsets.start,
        d.offsets.end,
        d.segment.display(),
        d.bytes.start,
        d.bytes.end,
        d.reason
    );
}
