//! The embedded log from Rust: create a topic, produce keyed records, and read them back as a
//! consumer group that resumes where it committed.
//!
//! ```sh
//! cargo run --example log_quickstart
//! ```

use std::time::Duration;

use eddy::log::{
    now_ms, AssignmentStrategy, Consumer, Log, LogOptions, OffsetReset, Record, TopicConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eddy-quickstart-{}", std::process::id()));
    let log = Log::open(&dir, LogOptions::default())?;
    let topic = log.create_topic("pageviews", TopicConfig::with_partitions(3))?;

    for (user, page) in [("alice", "/home"), ("bob", "/cart"), ("alice", "/checkout")] {
        // The key picks the partition, so one user's views stay in order.
        let p = topic.partition(topic.partition_for(Some(user.as_bytes())))?;
        let info = p.append(&[Record::new(Some(user), Some(page), now_ms())])?;
        println!(
            "{user} {page} -> partition {} offset {}",
            p.id(),
            info.base_offset
        );
    }

    let mut consumer = Consumer::with_group(
        &log,
        "reporting",
        &["pageviews"],
        OffsetReset::Earliest,
        AssignmentStrategy::Range,
    )?;
    loop {
        let records = consumer.poll(Duration::from_millis(100))?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let text = |b: &Option<bytes::Bytes>| {
                String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
            };
            println!(
                "read {}/{}@{}: {} {}",
                r.topic,
                r.partition,
                r.offset,
                text(&r.record.key),
                text(&r.record.value)
            );
        }
        consumer.commit()?;
    }
    drop((consumer, topic, log));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
