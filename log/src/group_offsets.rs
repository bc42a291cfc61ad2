//! Committed consumer-group offsets, kept in the log itself.
//!
//! Commits are records in the internal compacted topic `__consumer_offsets` (as in Kafka): the
//! key names (group, topic, partition), the value is the next offset to read as 8 big-endian
//! bytes followed by the committer's metadata string (Kafka's `OffsetCommit` carries one; it
//! reads back as committed), and a tombstone forgets a commit. One commit call is one append, hence one batch:
//! several partitions' offsets commit atomically. The topic is fsynced on every append, and
//! read back whole on open to rebuild the in-memory map, which compaction keeps small.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::{FsyncPolicy, TopicConfig};
use crate::error::Result;
use crate::partition::ReadLimits;
use crate::record::{now_ms, Record};
use crate::topic::Topic;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

type Key = (String, TopicPartition);

/// A committed position: the next offset to read, and what the committer attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: u64,
    pub metadata: String,
}

impl OffsetAndMetadata {
    pub fn new(offset: u64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
        }
    }
}

pub(crate) struct GroupOffsets {
    topic: Arc<Topic>,
    committed: Mutex<HashMap<Key, OffsetAndMetadata>>,
}

pub(crate) fn offsets_topic_config() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        compact: true,
        segment_bytes: 16 << 20,
        fsync: Some(FsyncPolicy::Always),
        ..TopicConfig::default()
    }
}

fn encode_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut k = Vec::with_capacity(group.len() + tp.topic.len() + 6);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    Bytes::from(k)
}

fn decode_value(v: &[u8]) -> Option<OffsetAndMetadata> {
    let (offset, metadata) = v.split_first_chunk::<8>()?;
    Some(OffsetAndMetadata {
        offset: u64::from_be_bytes(*offset),
        metadata: String::from_utf8_lossy(metadata).into_owned(),
    })
}

fn decode_key(k: &[u8]) -> Option<Key> {
    let (rest, partition) = k.split_at(k.len().checked_sub(4)?);
    let partition = u32::from_be_bytes(partition.try_into().ok()?);
    let rest = rest.strip_suffix(&[0])?;
    let sep = rest.iter().position(|&b| b == 0)?;
    let group = std::str::from_utf8(&rest[..sep]).ok()?;
    let topic = std::str::from_utf8(&rest[sep + 1..]).ok()?;
    Some((group.to_string(), TopicPartition::new(topic, partition)))
}

impl GroupOffsets {
    /// Loads every commit from the offsets topic.
    pub fn load(topic: Arc<Topic>) -> Result<GroupOffsets> {
        let mut committed = HashMap::new();
        let partition = topic.partition(0)?.clone();
        let mut offset = partition.start_offset();
        loop {
            let records = partition.read(offset, ReadLimits::default())?;
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let Some(key) = r.record.key.as_deref().and_then(decode_key) else {
                    continue;
                };
                match r.record.value.as_deref().and_then(decode_value) {
                    Some(v) => {
                        committed.insert(key, v);
                    }
                    None => {
                        committed.remove(&key);
                    }
                }
            }
        }
        Ok(GroupOffsets {
            topic,
            committed: Mutex::new(committed),
        })
    }

    /// Durably commits `offsets` for `group` (all or none), then makes them visible.
    pub fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        let records: Vec<Record> = offsets
            .iter()
            .map(|(tp, committed)| {
                let mut value = Vec::with_capacity(8 + committed.metadata.len());
                value.extend_from_slice(&committed.offset.to_be_bytes());
                value.extend_from_slice(committed.metadata.as_bytes());
                Record {
                    key: Some(encode_key(group, tp)),
                    value: Some(Bytes::from(value)),
                    timestamp: now_ms(),
                    headers: Vec::new(),
                }
            })
            .collect();
        self.topic.partition(0)?.append(&records)?;
        let mut map = self.committed.lock();
        for (tp, committed) in offsets {
            map.insert((group.to_string(), tp.clone()), committed.clone());
        }
        Ok(())
    }

    pub fn committed(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.committed
            .lock()
            .get(&(group.to_string(), tp.clone()))
            .cloned()
    }

    /// Everything `group` committed, by partition.
    pub fn of_group(&self, group: &str) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        let mut all: Vec<_> = self
            .committed
            .lock()
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, tp), c)| (tp.clone(), c.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The groups that committed anything.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .committed
            .lock()
            .keys()
            .map(|(g, _)| g.clone())
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Forgets every group's commits on `topic` (it was deleted).
    pub fn forget_topic(&self, topic: &str) -> Result<()> {
        let keys: Vec<Key> = self
            .committed
            .lock()
            .keys()
            .filter(|(_, tp)| tp.topic == topic)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let tombstones: Vec<Record> = keys
            .iter()
            .map(|(g, tp)| Record {
                key: Some(encode_key(g, tp)),
                value: None,
                timestamp: now_ms(),
                headers: Vec::new(),
            })
            .collect();
        self.topic.partition(0)?.append(&tombstones)?;
        let mut map = self.committed.lock();
        for k in keys {
            map.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let tp = TopicPartition::new("orders.v2", 7);
        assert_eq!(
            decode_key(&encode_key("g-1", &tp)),
            Some(("g-1".into(), tp))
        );
        assert_eq!(decode_key(b"xy"), None);
    }
}
