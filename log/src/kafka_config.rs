//! A topic's settings under Kafka's names (`cleanup.policy`, `retention.ms`, ...), so that Kafka
//! tools can create and describe Eddy's topics in their own words.
//!
//! Each name maps to a field of [`TopicConfig`]. Settings about replicas (`min.insync.replicas`
//! and the like) and `message.format.version` are accepted and have no effect: the log is one
//! node, keeps one copy and has one batch format.
//! Any other name is refused, as Kafka refuses names it does not know.

use crate::batch::Codec;
use crate::config::{FsyncPolicy, TopicConfig, DEFAULT_MAX_MESSAGE_BYTES};
use crate::error::LogError;

/// A setting as Kafka's DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    /// The value is the default, not one set on the topic.
    pub is_default: bool,
}

/// Names accepted and ignored: most are about replicas, and the log keeps one copy;
/// `message.format.version` is about record formats older than the one batch format the log
/// serves (Kafka 3 ignores it too).
const IGNORED_SETTINGS: &[&str] = &[
    "message.format.version",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
    "message.downconversion.enable",
    "preallocate",
];

/// Kafka's "keep forever" for retention settings.
const UNLIMITED: i64 = -1;

impl TopicConfig {
    /// Sets one setting by its Kafka name (a `CreateTopics` config, `--config` on the CLI).
    pub fn set_kafka(&mut self, name: &str, value: &str) -> Result<(), LogError> {
        let bad = |why: &str| {
            Err(LogError::InvalidConfig(format!(
                "invalid value '{value}' for configuration {name}: {why}"
            )))
        };
        let number = || value.trim().parse::<i64>().ok();
        let positive = || number().filter(|&n| n > 0).map(|n| n as u64);
        let limit = || match number() {
            Some(UNLIMITED) => Some(None),
            Some(n) if n >= 0 => Some(Some(n as u64)),
            _ => None,
        };
        match name {
            "cleanup.policy" => {
                let mut compact = false;
                for policy in value.split(',').map(str::trim) {
                    match policy {
                        "compact" => compact = true,
                        "delete" => {}
                        _ => return bad("expected delete, compact or both"),
                    }
                }
                self.compact = compact;
            }
            "retention.ms" => match limit() {
                Some(v) => self.retention_ms = v,
                None => return bad("expected -1 or a number of milliseconds"),
            },
            "retention.bytes" => match limit() {
                Some(v) => self.retention_bytes = v,
                None => return bad("expected -1 or a number of bytes"),
            },
            "segment.bytes" => match positive() {
                Some(v) => self.segment_bytes = v,
                None => return bad("expected a positive number of bytes"),
            },
            "segment.ms" => match positive() {
                Some(v) => self.segment_ms = Some(v),
                None => return bad("expected a positive number of milliseconds"),
            },
            "delete.retention.ms" => match number().filter(|&n| n >= 0) {
                Some(v) => self.delete_retention_ms = v as u64,
                None => return bad("expected a number of milliseconds"),
            },
            "index.interval.bytes" => match positive() {
                Some(v) => self.index_interval_bytes = v,
                None => return bad("expected a positive number of bytes"),
            },
            "max.message.bytes" => match positive() {
                Some(v) => self.max_message_bytes = v,
                None => return bad("expected a positive number of bytes"),
            },
            "message.timestamp.type" => match value {
                "CreateTime" => self.log_append_time = false,
                "LogAppendTime" => self.log_append_time = true,
                _ => return bad("expected CreateTime or LogAppendTime"),
            },
            "compression.type" => {
                self.compression = match value {
                    "producer" => None,
                    "uncompressed" | "none" => Some(Codec::None),
                    "gzip" => Some(Codec::Gzip),
                    "snappy" => Some(Codec::Snappy),
                    "lz4" => Some(Codec::Lz4),
                    "zstd" => Some(Codec::Zstd),
                    _ => return bad("expected producer, uncompressed, gzip, snappy, lz4 or zstd"),
                }
            }
            // Kafka's flush settings are the fsync policy: every message, or every N ms. Kafka's
            // default for either (Long.MAX_VALUE, "not by this") is how a topic on the log's
            // default policy describes itself, so it means that default here: a tool that
            // writes back what it described (AlterConfigs replaces the whole set) changes
            // nothing. It clears only what its own name would set.
            "flush.messages" => match positive() {
                Some(1) => self.fsync = Some(FsyncPolicy::Always),
                Some(n) if n == i64::MAX as u64 => {
                    if self.fsync == Some(FsyncPolicy::Always) {
                        self.fsync = None;
                    }
                }
                Some(_) => return bad("only 1 (fsync every append) is supported; see flush.ms"),
                None => return bad("expected a positive number"),
            },
            "flush.ms" => match number() {
                Some(i64::MAX) => {
                    if self.fsync != Some(FsyncPolicy::Always) {
                        self.fsync = None;
                    }
                }
                Some(n) if n > 0 => self.fsync = Some(FsyncPolicy::IntervalMs(n as u64)),
                _ => return bad("expected a positive number of milliseconds"),
            },
            _ if IGNORED_SETTINGS.contains(&name) => {}
            _ => {
                return Err(LogError::InvalidConfig(format!(
                    "unknown or unsupported topic configuration {name}"
                )))
            }
        }
        self.validate()
    }

    /// Puts one setting, by its Kafka name, back to its default (AlterConfigs' DELETE).
    pub fn reset_kafka(&mut self, name: &str) -> Result<(), LogError> {
        let d = TopicConfig::default();
        match name {
            "cleanup.policy" => self.compact = d.compact,
            "retention.ms" => self.retention_ms = d.retention_ms,
            "retention.bytes" => self.retention_bytes = d.retention_bytes,
            "segment.bytes" => self.segment_bytes = d.segment_bytes,
            "segment.ms" => self.segment_ms = d.segment_ms,
            "delete.retention.ms" => self.delete_retention_ms = d.delete_retention_ms,
            "index.interval.bytes" => self.index_interval_bytes = d.index_interval_bytes,
            "max.message.bytes" => self.max_message_bytes = d.max_message_bytes,
            "message.timestamp.type" => self.log_append_time = d.log_append_time,
            "compression.type" => self.compression = d.compression,
            // Back to the log's default policy.
            "flush.messages" | "flush.ms" => self.fsync = None,
            _ if IGNORED_SETTINGS.contains(&name) => {}
            _ => {
                return Err(LogError::InvalidConfig(format!(
                    "unknown or unsupported topic configuration {name}"
                )))
            }
        }
        self.validate()
    }

    /// Every setting under its Kafka name, as DescribeConfigs lists them.
    pub fn kafka_entries(&self) -> Vec<ConfigEntry> {
        let d = TopicConfig::default();
        let limit = |v: Option<u64>| v.map_or(UNLIMITED.to_string(), |v| v.to_string());
        let codec = |c: Option<Codec>| match c {
            None => "producer",
            Some(Codec::None) => "uncompressed",
            Some(Codec::Gzip) => "gzip",
            Some(Codec::Snappy) => "snappy",
            Some(Codec::Lz4) => "lz4",
            Some(Codec::Zstd) => "zstd",
        };
        let time_type = |append: bool| {
            if append {
                "LogAppendTime"
            } else {
                "CreateTime"
            }
        };
        let policy = |compact: bool| if compact { "compact" } else { "delete" };
        let (flush_ms, flush_messages) = match self.fsync {
            Some(FsyncPolicy::Always) => (None, Some(1)),
            Some(FsyncPolicy::IntervalMs(ms)) => (Some(ms as i64), None),
            // No fsync by time: Kafka's default, which is what `never` is.
            Some(FsyncPolicy::Never) => (Some(i64::MAX), None),
            None => (None, None),
        };
        let entry = |name, value: String, default: String| ConfigEntry {
            name,
            is_default: value == default,
            value,
        };
        vec![
            entry(
                "cleanup.policy",
                policy(self.compact).into(),
                policy(d.compact).into(),
            ),
            entry(
                "retention.ms",
                limit(self.retention_ms),
                limit(d.retention_ms),
            ),
            entry(
                "retention.bytes",
                limit(self.retention_bytes),
                limit(d.retention_bytes),
            ),
            entry(
                "segment.bytes",
                self.segment_bytes.to_string(),
                d.segment_bytes.to_string(),
            ),
            entry("segment.ms", limit(self.segment_ms), limit(d.segment_ms)),
            entry(
                "delete.retention.ms",
                self.delete_retention_ms.to_string(),
                d.delete_retention_ms.to_string(),
            ),
            entry(
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
                d.index_interval_bytes.to_string(),
            ),
            entry(
                "max.message.bytes",
                self.max_message_bytes.to_string(),
                DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            ),
            entry(
                "message.timestamp.type",
                time_type(self.log_append_time).into(),
                time_type(false).into(),
            ),
            entry(
                "compression.type",
                codec(self.compression).into(),
                codec(None).into(),
            ),
            entry(
                "flush.ms",
                flush_ms.unwrap_or(i64::MAX).to_string(),
                i64::MAX.to_string(),
            ),
            entry(
                "flush.messages",
                flush_messages.unwrap_or(i64::MAX).to_string(),
                i64::MAX.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_set_and_describe_the_same_fields() {
        let mut c = TopicConfig::with_partitions(3);
        for (name, value) in [
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "60000"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "1048576"),
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "zstd"),
            ("max.message.bytes", "2000000"),
            ("flush.messages", "1"),
            ("min.insync.replicas", "2"),
        ] {
            c.set_kafka(name, value).unwrap();
        }
        assert!(c.compact && c.log_append_time);
        assert_eq!(c.retention_ms, Some(60_000));
        assert_eq!(c.compression, Some(Codec::Zstd));
        assert_eq!(c.fsync, Some(FsyncPolicy::Always));
        let described: Vec<(&str, String, bool)> = c
            .kafka_entries()
            .into_iter()
            .map(|e| (e.name, e.value, e.is_default))
            .collect();
        assert!(described.contains(&("cleanup.policy", "compact".into(), false)));
        assert!(described.contains(&("retention.ms", "60000".into(), false)));
        assert!(described.contains(&("retention.bytes", "-1".into(), true)));
        assert!(described.contains(&("compression.type", "zstd".into(), false)));
        assert!(described.contains(&("message.timestamp.type", "LogAppendTime".into(), false)));
        assert!(described.contains(&("flush.messages", "1".into(), false)));
    }

    #[test]
    fn unknown_names_and_bad_values_are_refused() {
        let mut c = TopicConfig::default();
        assert!(c.set_kafka("no.such.setting", "1").is_err());
        assert!(c.set_kafka("retention.ms", "soon").is_err());
        assert!(c.set_kafka("cleanup.policy", "shred").is_err());
        assert!(c.set_kafka("segment.bytes", "10").is_err(), "below 1 KiB");
        assert!(c.set_kafka("message.timestamp.type", "EventTime").is_err());
    }
}
