//! The processing log: where records that a query cannot handle go, with the reason, so the
//! query keeps running and nothing is silently lost.
//!
//! Entries are JSON records in the topic `EDDY_PROCESSING_LOG` (readable with `PRINT` or
//! `eddy consume`): `{"query", "topic", "partition", "offset", "message"}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eddy_log::{now_ms, Log, Record, TopicConfig};

use crate::error::Result;

pub const PROCESSING_LOG_TOPIC: &str = "EDDY_PROCESSING_LOG";

#[derive(Clone)]
pub struct ProcessingLog {
    log: Log,
    /// Entries written by this process, per query (for DESCRIBE EXTENDED and metrics).
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

/// Where a bad record came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOrigin {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl ProcessingLog {
    pub fn new(log: Log) -> ProcessingLog {
        ProcessingLog {
            log,
            counts: Arc::default(),
        }
    }

    /// How many entries `query` has written since this process started.
    pub fn count_of(&self, query: &str) -> u64 {
        self.counts
            .lock()
            .map_or(0, |c| c.get(query).copied().unwrap_or(0))
    }

    /// Blocks until every entry appended so far is durable under the topic's fsync policy.
    pub fn wait_durable(&self) -> Result<()> {
        if let Ok(topic) = self.log.topic(PROCESSING_LOG_TOPIC) {
            let partition = topic.partition(0)?;
            partition.wait_durable_blocking(partition.written_offset())?;
        }
        Ok(())
    }

    /// Appends one entry. A failure to write the processing log is an error of the query.
    pub fn report(&self, query: &str, origin: Option<&RecordOrigin>, message: &str) -> Result<()> {
        tracing::debug!(query, ?origin, "{message}");
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(query.to_string()).or_default() += 1;
        }
        let topic = match self.log.topic(PROCESSING_LOG_TOPIC) {
            Ok(t) => t,
            Err(_) => match self
                .log
                .create_topic(PROCESSING_LOG_TOPIC, TopicConfig::default())
            {
                Ok(t) => t,
                // Another query created it meanwhile.
                Err(eddy_log::LogError::TopicExists(_)) => self.log.topic(PROCESSING_LOG_TOPIC)?,
                Err(e) => return Err(e.into()),
            },
        };
        let entry = serde_json::json!({
            "query": query,
            "topic": origin.map(|o| o.topic.clone()),
            "partition": origin.map(|o| o.partition),
            "offset": origin.map(|o| o.offset),
            "message": message,
        });
        let record = Record {
            key: None,
            value: Some(Bytes::from(entry.to_string())),
            timestamp: now_ms(),
            headers: Vec::new(),
        };
        // Not acknowledged one by one: a query that drops many records (late ones, say) must
        // not wait for a group commit per entry. The query's commit waits for them instead
        // (`wait_durable`), once for all the entries of the records it commits.
        topic.partition(0)?.append_unacknowledged(&[record])?;
        Ok(())
    }
}
