//! Tasks: the unit a query runs as, Kafka Streams' model.
//!
//! A query's graph is cut into *sub-topologies* at its repartition topics: the part before a
//! repartition topic writes it, the part after reads it. Each sub-topology runs as one task per
//! partition of its inputs (inputs of a sub-topology are co-partitioned, so task `p` reads
//! partition `p` of each). A task is a [`crate::Pipeline`] restricted to its partition: its
//! own operators and state stores (`eddy_state::StateScope`), its own changelog partitions, its
//! own committed input positions and its own **stream time**, the largest event time among the
//! records *it* has read. So a window closes when the records of its own partition say so,
//! never because another partition of the same query ran ahead, as in Kafka Streams.
//!
//! A few queries run as a single task over every partition of their inputs: a join whose sides
//! are not co-partitioned (a foreign-key join, whose foreign keys may point into any partition;
//! sides with different partition counts, or whose keys are written differently, so that equal
//! keys may sit in partitions of different numbers; windowed sides; a rekeyed side whose join
//! expressions' types differ from the other side's key), and a query whose state was written
//! by an Eddy from before tasks (it keeps the layout it has; see `ARCHITECTURE.md`).
//!
//! Tasks run on the stream threads of [`crate::runtime`], or in turn under a deterministic
//! driver (the SQL session's `run_until_idle`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eddy_log::Partition;

use crate::metrics::RateCounter;

/// Which task: a sub-topology of a query, and the partition it reads (`None`: every one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    pub subtopology: u32,
    pub partition: Option<u32>,
}

impl TaskId {
    /// The task of a query that is one sub-topology run as one task.
    pub const SINGLE: TaskId = TaskId {
        subtopology: 0,
        partition: None,
    };

    pub fn new(subtopology: u32, partition: Option<u32>) -> TaskId {
        TaskId {
            subtopology,
            partition,
        }
    }
}

/// Kafka Streams' task names: `1_3` is sub-topology 1's task for partition 3; a task over
/// every partition is `1_*`.
impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{}_{p}", self.subtopology),
            None => write!(f, "{}_*", self.subtopology),
        }
    }
}

/// What one task has done, read lock-free by whoever shows it (`/metrics`, EXPLAIN).
#[derive(Default)]
pub struct TaskMetrics {
    pub records_in: RateCounter,
    pub records_out: RateCounter,
    /// The partitions the task reads, with its committed position in each.
    inputs: parking_lot::Mutex<Vec<(Arc<Partition>, Arc<AtomicU64>)>>,
}

impl TaskMetrics {
    pub(crate) fn clear(&self) {
        self.inputs.lock().clear();
    }

    /// Counts `partition` among the task's inputs, its position read from `position`.
    pub(crate) fn track(&self, partition: Arc<Partition>, position: Arc<AtomicU64>) {
        self.inputs.lock().push((partition, position));
    }

    /// Records in its inputs it has not processed (and committed) yet.
    pub fn lag(&self) -> u64 {
        self.inputs
            .lock()
            .iter()
            .map(|(p, at)| p.end_offset().saturating_sub(at.load(Ordering::Acquire)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_named_as_kafka_streams_names_them() {
        assert_eq!(TaskId::new(1, Some(3)).to_string(), "1_3");
        assert_eq!(TaskId::SINGLE.to_string(), "0_*");
    }
}
