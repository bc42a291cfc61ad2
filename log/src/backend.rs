//! [`LogBackend`]: the log as the engine sees it.
//!
//! The engine reads sources, writes sinks and changelogs, and commits offsets only through this
//! trait, so that the embedded [`Log`] and an external Kafka cluster are interchangeable below
//! it. Methods that may wait (appends under group commit, waiting for new records) are async;
//! the rest answer at once.

use async_trait::async_trait;

use crate::config::TopicConfig;
use crate::error::Result;
use crate::group_offsets::TopicPartition;
use crate::log_dir::Log;
use crate::partition::{AppendInfo, ReadLimits};
use crate::record::{Record, StoredRecord};

#[async_trait]
pub trait LogBackend: Send + Sync + 'static {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()>;
    fn delete_topic(&self, name: &str) -> Result<()>;
    fn topic_names(&self) -> Vec<String>;
    fn partition_count(&self, topic: &str) -> Result<u32>;
    /// The partition a record with this key belongs in (Kafka's default partitioner).
    fn partition_for(&self, topic: &str, key: Option<&[u8]>) -> Result<u32>;
    /// Appends in order; resolves once the records are acknowledged.
    async fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<AppendInfo>;
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>>;
    /// Resolves once a record exists at `offset`.
    async fn wait_for_data(&self, topic: &str, partition: u32, offset: u64) -> Result<()>;
    /// The first readable offset and the next offset to be written.
    fn offset_range(&self, topic: &str, partition: u32) -> Result<(u64, u64)>;
    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<u64>>;
    fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()>;
    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>>;
}

#[async_trait]
impl LogBackend for Log {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        Log::create_topic(self, name, config).map(drop)
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        Log::delete_topic(self, name)
    }

    fn topic_names(&self) -> Vec<String> {
        self.topics().iter().map(|t| t.name().to_string()).collect()
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partition_count())
    }

    fn partition_for(&self, topic: &str, key: Option<&[u8]>) -> Result<u32> {
        Ok(self.topic(topic)?.partition_for(key))
    }

    async fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<AppendInfo> {
        self.partition(topic, partition)?
            .append_async(records)
            .await
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        limits: ReadLimits,
    ) -> Result<Vec<StoredRecord>> {
        self.partition(topic, partition)?.read(offset, limits)
    }

    async fn wait_for_data(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        self.partition(topic, partition)?
            .wait_for_data(offset)
            .await;
        Ok(())
    }

    fn offset_range(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let p = self.partition(topic, partition)?;
        Ok((p.start_offset(), p.end_offset()))
    }

    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<u64>> {
        self.partition(topic, partition)?
            .offset_for_timestamp(timestamp)
    }

    fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        Log::commit_offsets(self, group, offsets)
    }

    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>> {
        Ok(Log::committed_offset(self, group, tp))
    }
}
