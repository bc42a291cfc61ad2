//! When a task commits, and what a commit holds.
//!
//! A stateless task commits at least once: its consumer group's offsets, once the output they
//! cover is acknowledged (`commit_positions`). A stateful task (an exactly-once query's, or one
//! of its stages') appends its output as it produces it, in one transaction per sink partition
//! (`eddy_log::Transaction`, Kafka's model: readers see it only once it commits). Either
//! commits not after every read: when the commit
//! interval has passed since the last one (ksqlDB's `commit.interval.ms`, 2 s by default), when
//! an operator's uncommitted changes reach the bound it keeps in memory
//! ([`crate::Operator::wants_commit`]), or when no input is left to read
//! ([`Pipeline::run_for`] returns). A commit writes each changed key once however often it
//! changed since the last, so under load, when commits are far apart, a group updated by many
//! records costs one write to RocksDB and one changelog record. Once idle, every result is
//! committed and readable at once.
//!
//! The commit itself: the operators' changes go to their changelogs (the task's partition of
//! each) and into one RocksDB write batch with the task's input positions and, for each sink
//! partition, where the task's output ends (`output/<task>/<topic>/<partition>`); once the
//! output is durable the batch is written (the commit point), and then the transactions
//! commit, making the output readable. A crash before the batch is written leaves the
//! transactions undecided and their ends unrecorded: the session's recovery cuts them off
//! ([`Pipeline::committed_output`] says where the last commit ended), and the input they came
//! from is read again. A crash after it leaves them undecided with their ends recorded: they
//! are kept. Only a commit makes output visible, so a reader never sees what recovery may cut
//! off, whatever order the replay reads partitions in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use eddy_log::{writer_id, Log, Record, TopicPartition, Transaction};
use eddy_state::{Commit, StateDb};

use super::{input_position, Pipeline};
use crate::error::Result;
use crate::processing_log::ProcessingLog;
use crate::task::TaskId;

/// How long a stateful query goes between commits while input keeps coming: ksqlDB's default
/// `commit.interval.ms`.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(2);

/// What a stateful task has done since its last commit.
pub(super) struct Uncommitted {
    /// Input records read.
    pub(super) records: u64,
    /// Whether a position moved over offsets without records (aborted, compacted away,
    /// retained no longer): committed too, though nothing was read.
    pub(super) moved: bool,
    /// The open transaction of each sink partition written to.
    output: BTreeMap<u32, Transaction>,
    /// For a stateless task: each sink partition's end after its last append, which must be
    /// acknowledged before the input positions are committed.
    appended: BTreeMap<u32, u64>,
    /// The earliest time of the records read, which the pending output is stamped no
    /// earlier than.
    pub(super) min_time: Option<i64>,
    since: Instant,
}

impl Uncommitted {
    pub(super) fn new() -> Uncommitted {
        Uncommitted {
            records: 0,
            moved: false,
            output: BTreeMap::new(),
            appended: BTreeMap::new(),
            min_time: None,
            since: Instant::now(),
        }
    }
}

impl Uncommitted {
    /// A stateless task appended up to these ends (by sink partition).
    pub(super) fn appended(&mut self, ends: Vec<(u32, u64)>) {
        self.appended.extend(ends);
    }
}

fn task_label(task: TaskId) -> String {
    match task.partition {
        Some(p) => p.to_string(),
        None => "*".into(),
    }
}

/// The name under which a task records the end of its output in a sink partition.
fn output_end(task: &str, topic: &str, partition: u32) -> String {
    format!("output/{task}/{topic}/{partition}")
}

/// Where each task's last commit recorded that its output ends in each sink partition, by
/// (writer, topic, partition): what of a transaction a crash left undecided to keep (see
/// `eddy_log::Partition::resolve`). Read from the commits themselves, so it covers the tasks
/// of every query with state, running or not.
pub fn committed_outputs(db: &StateDb) -> Result<HashMap<(u64, String, u32), u64>> {
    let mut ends = HashMap::new();
    for (owner, name, end) in db.positions_named("output/")? {
        let mut parts = name["output/".len()..].splitn(3, '/');
        let (Some(task), Some(topic), Some(partition)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(partition) = partition.parse::<u32>() else {
            continue;
        };
        let writer = writer_id(&format!("{owner}/{task}"));
        ends.insert((writer, topic.to_string(), partition), end);
    }
    Ok(ends)
}
impl Pipeline {
    /// A stateless task's commit, at least once: once the output it appended is acknowledged,
    /// its input positions (as its consumer group's offsets).
    fn commit_positions(&mut self, log: &Log) -> Result<()> {
        let uncommitted = std::mem::replace(&mut self.uncommitted, Uncommitted::new());
        if let Some(sink) = &self.sink {
            for (&p, &end) in &uncommitted.appended {
                sink.topic.partition(p)?.wait_durable_blocking(end)?;
            }
        }
        let mut consumed = Vec::new();
        for input in &self.inputs {
            for &p in &input.parts {
                let tp = TopicPartition::new(input.source.topic.name(), p as u32);
                consumed.push((tp, input.positions[p]));
            }
        }
        log.commit_offsets(&self.id, &consumed)?;
        // Only now is what was read reflected in the committed output (a caller that waits
        // for lag 0 may then read it).
        for i in 0..self.inputs.len() {
            self.publish_committed(i);
        }
        Ok(())
    }

    /// The id of this task's transactions: what `eddy_log::Partition::undecided` gives back
    /// after a crash. `None` for a task that writes none (stateless, or without a sink).
    pub fn writer(&self) -> Option<u64> {
        (self.state.is_some() && self.sink.is_some() && !self.transient)
            .then(|| writer_id(&format!("{}/{}", self.id, task_label(self.task))))
    }

    /// Appends `records` (by sink partition) to the task's open transactions.
    pub(super) fn append_output(&mut self, records: BTreeMap<u32, Vec<Record>>) -> Result<()> {
        let (Some(sink), Some(writer)) = (&self.sink, self.writer()) else {
            return Ok(());
        };
        for (p, records) in records {
            let txn = match self.uncommitted.output.entry(p) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(sink.topic.partition(p)?.begin(writer))
                }
            };
            txn.append(&records)?;
        }
        Ok(())
    }

    /// Whether a stateful task should commit before reading on (see the module docs).
    pub(super) fn commit_due(&self) -> bool {
        self.uncommitted.since.elapsed() >= self.commit_interval
            || self
                .inputs
                .iter()
                .flat_map(|i| i.operators.iter())
                .chain(self.operators.iter())
                .any(|o| o.wants_commit())
    }

    /// Commits a task's work since its last commit (see the module docs). Does nothing with
    /// nothing new, nor for a transient query.
    pub(super) fn commit(&mut self, log: &Log, plog: &ProcessingLog) -> Result<()> {
        if (self.uncommitted.records == 0 && !self.uncommitted.moved) || self.transient {
            return Ok(());
        }
        let Some(db) = &self.state else {
            return self.commit_positions(log);
        };
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
            for &p in &input.parts {
                let position = input.positions[p];
                commit.set_offset(&self.id, &input_position(topic, p as u32), position);
                consumed.push((TopicPartition::new(topic, p as u32), position));
            }
        }
        let label = task_label(self.task);
        for txn in uncommitted.output.values() {
            let (partition, Some(end)) = (txn.partition(), txn.end()) else {
                continue;
            };
            partition.wait_durable_blocking(end)?;
            let name = output_end(&label, partition.topic(), partition.id());
            commit.set_offset(&self.id, &name, end);
        }
        plog.wait_durable()?;
        // The commit point: a crash before it cuts the transactions off (dropped here on an
        // error, they abort), one after it keeps them.
        db.commit(commit)?;
        let mut output = uncommitted.output.into_values();
        while let Some(txn) = output.next() {
            let (partition, end) = (txn.partition().clone(), txn.end());
            if let Err(e) = txn.commit() {
                // Committed in the state: what is left must not abort. Left undecided, a
                // restart keeps it (its end is recorded).
                output.for_each(std::mem::forget);
                return Err(e.into());
            }
            // Committed, but readable only once every transaction before it has decided: a
            // stage still holds the bound of the sub-topology it feeds until then.
            if let (Some(end), Some(t)) = (end, uncommitted.min_time) {
                if self.publishes.is_some() && partition.end_offset() < end {
                    self.hidden.push((partition, end, t));
                }
            }
        }
        log.commit_offsets(&self.id, &consumed)?;
        // The only reader of its repartition topics' partitions: what it committed is
        // consumed for good.
        for input in self.inputs.iter().filter(|i| i.staged()) {
            for &p in &input.parts {
                input
                    .source
                    .topic
                    .partition(p as u32)?
                    .delete_before(input.positions[p])?;
            }
        }
        for i in 0..self.inputs.len() {
            self.publish_committed(i);
        }
        self.publish_progress();
        Ok(())
    }
}
