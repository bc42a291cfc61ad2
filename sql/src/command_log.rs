//! The command topic: every statement that shaped the catalog or started a query, in order, so
//! that a restart can replay them, as ksqlDB does with its command topic.
//!
//! Records of `__eddy_commands` (one partition, fsynced on every append) hold
//! `{"sql": "...", "properties": {...}}`: the statement's text and the session properties in
//! force when it ran (`auto.offset.reset` decides where a new query starts). Replaying them in
//! order rebuilds the catalog and restarts each persistent query under the same id, so it
//! resumes from the offsets it committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_log::{now_ms, FsyncPolicy, Log, LogError, ReadLimits, Record, Topic, TopicConfig};
use serde_json::{json, Value};

use crate::error::Result;

pub const COMMAND_TOPIC: &str = "__eddy_commands";

/// A recorded statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub sql: String,
    pub properties: BTreeMap<String, String>,
}

pub(crate) struct CommandLog {
    topic: Arc<Topic>,
}

impl CommandLog {
    pub fn open(log: &Log) -> Result<CommandLog> {
        let config = TopicConfig {
            fsync: Some(FsyncPolicy::Always),
            ..TopicConfig::default()
        };
        let topic = match log.topic(COMMAND_TOPIC) {
            Ok(t) => t,
            Err(LogError::UnknownTopic(_)) => log.create_topic(COMMAND_TOPIC, config)?,
            Err(e) => return Err(e.into()),
        };
        Ok(CommandLog { topic })
    }

    /// Durably records a statement that succeeded.
    pub fn append(&self, sql: &str, properties: &BTreeMap<String, String>) -> Result<()> {
        let value = json!({ "sql": sql, "properties": properties }).to_string();
        let record = Record {
            key: None,
            value: Some(Bytes::from(value)),
            timestamp: now_ms(),
            headers: Vec::new(),
        };
        self.topic.partition(0)?.append(&[record])?;
        Ok(())
    }

    /// Every recorded statement, oldest first. Unreadable entries are skipped with a warning.
    pub fn read_all(&self) -> Result<Vec<Command>> {
        let p = self.topic.partition(0)?;
        let mut offset = p.start_offset();
        let mut out = Vec::new();
        loop {
            let records = p.read(offset, ReadLimits::default())?;
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let parsed: Option<Command> = r
                    .record
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                    .and_then(|v| {
                        Some(Command {
                            sql: v.get("sql")?.as_str()?.to_string(),
                            properties: v
                                .get("properties")?
                                .as_object()?
                                .iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                .collect(),
                        })
                    });
                match parsed {
                    Some(c) => out.push(c),
                    None => tracing::warn!(
                        offset = r.offset,
                        "skipping an unreadable entry of {COMMAND_TOPIC}"
                    ),
                }
            }
        }
        Ok(out)
    }
}
