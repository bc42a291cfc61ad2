//! The processing log: where records that a query cannot handle go, with the reason, so the
//! query keeps running and nothing is silently lost.
//!
//! Entries are JSON records in the topic `EDDY_PROCESSING_LOG` (readable with `PRINT` or
//! `eddy consume`): `{"query", "topic", "partition", "offset", "message"}`.

use bytes::Bytes;
use eddy_log::{now_ms, Log, Record, TopicConfig};

use crate::error::Result;

pub const PROCESSING_LOG_TOPIC: &str = "EDDY_PROCESSING_LOG";

#[derive(Clone)]
pub struct ProcessingLog {
    log: Log,
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
        ProcessingLog { log }
    }

    /// Appends one entry. A failure to write the processing log is an error of the query.
    pub fn report(&self, query: &str, origin: Option<&RecordOrigin>, message: &str) -> Result<()> {
        tracing::debug!(query, ?origin, "{message}");
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
        topic.partition(0)?.append(&[record])?;
        Ok(())
    }
}
