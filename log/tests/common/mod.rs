#![allow(dead_code)]

use bytes::Bytes;
use eddy_log::{Log, LogOptions, ReadLimits, Record, StoredRecord, Topic};

pub fn manual() -> LogOptions {
    LogOptions {
        background: false,
        ..LogOptions::default()
    }
}

pub fn rec(key: Option<&str>, value: Option<&str>, ts: i64) -> Record {
    Record::new(
        key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        ts,
    )
}

/// Every record of partition `p`, from its start.
pub fn read_all(topic: &Topic, p: u32) -> Vec<StoredRecord> {
    let part = topic.partition(p).unwrap();
    let mut out = Vec::new();
    let mut offset = part.start_offset();
    loop {
        let batch = part.read(offset, ReadLimits::default()).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset + 1;
        out.extend(batch);
    }
    out
}

pub fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, manual()).unwrap()
}

/// Tiny segments and index intervals, so that a few records span many of each.
pub fn small_segments(partitions: u32) -> eddy_log::TopicConfig {
    eddy_log::TopicConfig {
        partitions,
        segment_bytes: 2048,
        index_interval_bytes: 200,
        ..eddy_log::TopicConfig::default()
    }
}
