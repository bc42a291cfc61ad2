//! Topic and data-directory settings, and the fsync policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::Codec;
use crate::error::LogError;

/// When appended data is forced to disk, and so when an append is acknowledged.
///
/// An acknowledged append survives kill -9 under every policy (the page cache outlives the
/// process); the policy decides whether it also survives losing the machine's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync before every append returns.
    Always,
    /// Group commit: a background flusher fsyncs every this many milliseconds, and an append
    /// returns once the fsync covering it is done. Concurrent appenders share one fsync.
    IntervalMs(u64),
    /// Never fsync (the OS writes back when it likes); appends return at once.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::IntervalMs(5)
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::IntervalMs(ms) => write!(f, "{ms}ms"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = LogError;
    /// `always`, `never`, or a group-commit interval such as `5ms` or `5`.
    fn from_str(s: &str) -> Result<Self, LogError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => other
                .trim_end_matches("ms")
                .parse::<u64>()
                .ok()
                .filter(|&ms| ms > 0)
                .map(FsyncPolicy::IntervalMs)
                .ok_or_else(|| {
                    LogError::InvalidConfig(format!(
                        "fsync policy '{s}': expected always, never or an interval like 5ms"
                    ))
                }),
        }
    }
}

/// A topic's settings, fixed when it is created and stored beside its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Keep only the latest record per key (and drop tombstones after `delete_retention_ms`).
    pub compact: bool,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Roll to a new segment when the active one reaches this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is this old (and not empty).
    pub segment_ms: Option<u64>,
    /// How long a tombstone stays readable in a compacted topic, counted from when the
    /// segment holding it was last written.
    pub delete_retention_ms: u64,
    /// Bytes of log between two offset-index (and time-index) entries.
    pub index_interval_bytes: u64,
    /// Overrides the data directory's policy.
    pub fsync: Option<FsyncPolicy>,
    /// Kafka's `message.timestamp.type=LogAppendTime`: the log gives every record the time of
    /// its append, whatever timestamp its producer chose (Kafka's `CreateTime` when false).
    pub log_append_time: bool,
    /// Kafka's `compression.type`: the codec the Kafka listener serves this topic's batches
    /// with. `None` (Kafka's `producer`) serves each batch compressed as its producer sent it.
    pub compression: Option<Codec>,
    /// Kafka's `max.message.bytes`: the largest record batch a Kafka producer may send.
    pub max_message_bytes: u64,
}

/// Kafka's default `max.message.bytes`: 1 MiB plus a batch header's worth.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = (1 << 20) + 12;

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            compact: false,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 128 << 20,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            delete_retention_ms: 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            fsync: None,
            log_append_time: false,
            compression: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl TopicConfig {
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..Default::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let bad = |m: &str| Err(LogError::InvalidConfig(m.to_string()));
        if self.partitions == 0 || self.partitions > 100_000 {
            return bad("a topic needs between 1 and 100000 partitions");
        }
        // Index entries hold 32-bit positions.
        if self.segment_bytes < 1024 || self.segment_bytes > (1 << 31) {
            return bad("segment_bytes must be between 1 KiB and 2 GiB");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        Ok(())
    }
}

/// Settings of a whole data directory.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Policy of topics that do not set their own.
    pub fsync: FsyncPolicy,
    /// How often the background cleaner applies retention and compaction.
    pub cleaner_interval: Duration,
    /// Start the background flusher and cleaner threads. Tests that drive retention and
    /// compaction by hand turn this off.
    pub background: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            fsync: FsyncPolicy::default(),
            cleaner_interval: Duration::from_secs(10),
            background: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fsync_policies() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!("NEVER".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        assert_eq!(
            "20ms".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::IntervalMs(20)
        );
        assert_eq!(
            "7".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::IntervalMs(7)
        );
        assert!("0ms".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        for p in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::IntervalMs(3),
        ] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>().unwrap(), p);
        }
    }
}
