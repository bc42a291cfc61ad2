//! A pipeline's inputs: where each partition starts, which partitions a task reads, and where
//! its positions are published once committed (lag, progress).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eddy_log::{Log, TopicPartition};
use eddy_state::StateDb;

use super::{Pipeline, StageProgress};
use crate::error::Result;
use crate::operator::Operator;
use crate::source::{EventClock, Source};
use crate::task::TaskId;

/// The name under which a stateful query's input position is committed with its state.
pub(super) fn input_position(topic: &str, partition: u32) -> String {
    format!("input/{topic}/{partition}")
}

/// Where a query starts reading each partition of `source`: its committed position (with its
/// state for a stateful query, else, or when its state has none, its consumer group's), or
/// else the start or the end. A query that kept its positions only in its group (stateless and
/// at least once until a restart under exactly_once_v2, or whose state was lost) goes on from
/// there.
pub(super) fn start_positions(
    log: &Log,
    id: &str,
    source: &Source,
    from_beginning: bool,
    state: Option<&StateDb>,
) -> Result<Vec<u64>> {
    let mut positions = Vec::new();
    for p in source.topic.partitions() {
        let in_state = match state {
            Some(db) => db.offset(id, &input_position(source.topic.name(), p.id()))?,
            None => None,
        };
        let stored = in_state.or_else(|| {
            log.committed_offset(id, &TopicPartition::new(source.topic.name(), p.id()))
        });
        positions.push(stored.unwrap_or(if from_beginning {
            p.start_offset()
        } else {
            p.end_offset()
        }));
    }
    Ok(positions)
}

/// One input of a pipeline: a source, the operators its batches go through before the
/// pipeline's own, and how far each of its partitions has been read.
pub(super) struct Input {
    pub(super) source: Source,
    /// The event time of the source's records, one at a time.
    pub(super) clock: EventClock,
    pub(super) operators: Vec<Box<dyn Operator>>,
    /// By partition: where the task has read to. Only `parts` are read and committed.
    pub(super) positions: Vec<u64>,
    /// The partitions the task reads.
    pub(super) parts: Vec<usize>,
    /// By partition (of `parts`): where the committed position is published (lag, progress).
    pub(super) committed: Vec<Option<Arc<AtomicU64>>>,
    /// By partition (of `parts`), for a stage that feeds another: where the read position is
    /// published (see `progress.rs`).
    pub(super) read: Vec<Option<Arc<AtomicU64>>>,
    /// The stage that writes this input's topic (a repartition topic) in the same task: a
    /// transient query's (see [`Pipeline::with_upstream`]).
    pub(super) upstream: Option<Box<Pipeline>>,
    /// The sub-topology that writes this input's topic, as tasks of its own (see
    /// [`Pipeline::fed_by`]).
    pub(super) fed_by: Option<Arc<StageProgress>>,
    /// By partition, where the records that only build the input's operators' state end (see
    /// `seed.rs`); empty for an input without such records.
    pub(super) seed_until: Vec<u64>,
    /// A table the input's operators keep a copy of (`seed.rs`): read to its end first in each
    /// turn.
    pub(super) table: bool,
}

impl Input {
    pub(super) fn new(
        source: Source,
        operators: Vec<Box<dyn Operator>>,
        positions: Vec<u64>,
    ) -> Input {
        let n = positions.len();
        Input {
            clock: source.clock(),
            source,
            operators,
            parts: (0..n).collect(),
            positions,
            committed: vec![None; n],
            read: vec![None; n],
            upstream: None,
            fed_by: None,
            seed_until: Vec::new(),
            table: false,
        }
    }

    /// Whether the input's records come from another stage rather than from a source.
    pub(super) fn staged(&self) -> bool {
        self.upstream.is_some() || self.fed_by.is_some()
    }
}

/// Restricts `input` to the partition `task` reads.
pub(super) fn restrict(input: &mut Input, task: TaskId) {
    if let Some(p) = task.partition {
        input.parts = (0..input.positions.len())
            .filter(|&q| q == p as usize)
            .collect();
    }
}

impl Pipeline {
    /// (Re)registers where each input partition's committed position is published.
    pub(super) fn attach_metrics(&mut self) {
        self.task_metrics.clear();
        for input in &mut self.inputs {
            let topic = input.source.topic.clone();
            for &p in &input.parts {
                let slot = self
                    .metrics
                    .slot(topic.name(), p as u32, input.positions[p]);
                slot.store(input.positions[p], Ordering::Release);
                if let Ok(partition) = topic.partition(p as u32) {
                    self.task_metrics.track(partition.clone(), slot.clone());
                }
                input.committed[p] = Some(slot);
            }
        }
    }

    /// Publishes the positions of input `i` as committed (for lag and progress).
    pub(super) fn publish_committed(&self, i: usize) {
        let input = &self.inputs[i];
        for &p in &input.parts {
            if let Some(slot) = &input.committed[p] {
                slot.store(input.positions[p], Ordering::Release);
            }
        }
    }
}
