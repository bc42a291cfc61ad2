//! When a stateful query commits, and what a commit holds.
//!
//! A stateful query commits not after every read. Its output is appended *pending*, unseen by readers, and a commit
//! comes when the commit interval has passed since the last one (ksqlDB's
//! `commit.interval.ms`, 2 s by default), when an operator's uncommitted changes reach the
//! bound it keeps in memory ([`crate::Operator::wants_commit`]), or when no input is left to read
//! ([`Pipeline::run_available`] returns). A commit writes each changed key once however often
//! it changed since the last, so under load, when commits are far apart, a group updated by
//! many records costs one write to RocksDB and one changelog record. Once idle, every result
//! is committed and readable at once. Only the commit makes output visible, so a reader
//! never sees what recovery may cut off, whatever order the replay then reads partitions in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_log::{Log, TopicPartition};
use eddy_state::Commit;

use super::{input_position, output_end, Pipeline};
use crate::error::Result;
use crate::processing_log::ProcessingLog;

/// How long a stateful query goes between commits while input keeps coming: ksqlDB's default
/// `commit.interval.ms`.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(2);

/// What a stateful query has done since its last commit.
pub(super) struct Uncommitted {
    /// Input records read.
    pub(super) records: u64,
    /// Each sink partition's end after the pending appends.
    pub(super) sink_ends: BTreeMap<u32, u64>,
    /// The earliest time of the records read, which the pending output is stamped no
    /// earlier than.
    pub(super) min_time: Option<i64>,
    since: Instant,
}

impl Uncommitted {
    pub(super) fn new() -> Uncommitted {
        Uncommitted {
            records: 0,
            sink_ends: BTreeMap::new(),
            min_time: None,
            since: Instant::now(),
        }
    }
}

impl Pipeline {
    /// Whether a stateful query should commit before reading on (see the module docs).
    pub(super) fn commit_due(&self) -> bool {
        self.uncommitted.since.elapsed() >= self.commit_interval
            || self
                .inputs
                .iter()
                .flat_map(|i| i.operators.iter())
                .chain(self.operators.iter())
                .any(|o| o.wants_commit())
    }

    /// Commits a stateful query's work since its last commit, as one RocksDB write batch: the
    /// operators' changed state, every input position, the sink's ends (once the output is
    /// acknowledged). Only then does the output become visible and the positions count as
    /// consumed (lag). The processing log's entries about the records it covers are made
    /// durable first, so a crash after the commit cannot lose them. Does nothing without state
    /// or with nothing new.
    pub(super) fn commit(&mut self, log: &Log, plog: &ProcessingLog) -> Result<()> {
        let Some(db) = &self.state else {
            return Ok(());
        };
        if self.uncommitted.records == 0 {
            return Ok(());
        }
        let uncommitted = std::mem::replace(&mut self.uncommitted, Uncommitted::new());
        let mut commit = Commit::new();
        for input in &mut self.inputs {
            for op in &mut input.operators {
                op.checkpoint(&mut commit)?;
            }
        }
        for op in &mut self.operators {
            op.checkpoint(&mut commit)?;
        }
        let mut consumed = Vec::new();
        for input in &self.inputs {
            let topic = input.source.topic.name();
            for (p, &position) in input.positions.iter().enumerate() {
                commit.set_offset(&self.id, &input_position(topic, p as u32), position);
                consumed.push((TopicPartition::new(topic, p as u32), position));
            }
        }
        if let Some(sink) = &self.sink {
            for (&p, &end) in &uncommitted.sink_ends {
                sink.topic.partition(p)?.wait_durable_blocking(end)?;
                commit.set_offset(&self.id, &output_end(sink.topic.name(), p), end);
            }
        }
        plog.wait_durable()?;
        db.commit(commit)?;
        if let Some(sink) = &self.sink {
            for (&p, &end) in &uncommitted.sink_ends {
                sink.topic.partition(p)?.make_visible(end);
            }
        }
        log.commit_offsets(&self.id, &consumed)?;
        // The only reader of its repartition topics: what it committed is consumed for good.
        for input in self.inputs.iter().filter(|i| i.upstream.is_some()) {
            for (p, &position) in input.positions.iter().enumerate() {
                input
                    .source
                    .topic
                    .partition(p as u32)?
                    .delete_before(position)?;
            }
        }
        if self.inputs[0].upstream.is_none() {
            for (p, &position) in self.inputs[0].positions.iter().enumerate() {
                self.metrics.set_position(p as u32, position);
            }
        }
        Ok(())
    }
}
