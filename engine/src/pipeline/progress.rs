//! What a sub-topology may still write into the repartition topic it feeds, in event time.
//!
//! A stream-stream join reads its inputs in event-time order within its grace (`turns.rs`): a
//! partition is read only up to the time of the next record any other input may still give.
//! When an input is a repartition topic, that includes records the sub-topology before it has
//! read but not committed, or not read yet, and that sub-topology runs as other tasks, on
//! other threads. So each of its tasks publishes here how far it has read each input partition
//! and the earliest time it holds uncommitted, and the join's tasks compute a lower bound of
//! the time of everything still to come ([`StageProgress::bound`]), reading the heads of the
//! stage's own inputs themselves: a record appended a moment ago counts before the stage's
//! task has even woken up for it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use eddy_log::Topic;
use parking_lot::Mutex;

use super::Pipeline;
use crate::error::Result;
use crate::source::EventClock;

/// See the module docs. Shared by the tasks of one sub-topology (which publish) and those of
/// the sub-topology it feeds (which read).
#[derive(Default)]
pub struct StageProgress {
    /// Per task: the earliest time of the records it has read and not committed
    /// (`i64::MAX`: none).
    pending: Mutex<Vec<Arc<AtomicI64>>>,
    /// Every input partition of the stage, with the position its task has read to.
    inputs: Mutex<Vec<(EventClock, u32, Arc<AtomicU64>)>>,
    /// The stages that feed this one.
    upstream: Mutex<Vec<Arc<StageProgress>>>,
}

impl StageProgress {
    pub fn new() -> Arc<StageProgress> {
        Arc::default()
    }

    /// A task of this stage: the slot it publishes its uncommitted records' earliest time in.
    pub(super) fn task_slot(&self) -> Arc<AtomicI64> {
        let slot = Arc::new(AtomicI64::new(i64::MAX));
        self.pending.lock().push(slot.clone());
        slot
    }

    /// Partition `p` of the topic `clock` reads, an input of this stage read up to
    /// `position` by its task.
    pub(super) fn input(&self, clock: EventClock, p: u32, position: Arc<AtomicU64>) {
        self.inputs.lock().push((clock, p, position));
    }

    /// `stage` feeds this one.
    pub(super) fn fed_by(&self, stage: Arc<StageProgress>) {
        self.upstream.lock().push(stage);
    }

    /// A lower bound of the time of every record the stage has yet to make readable: those it
    /// read since its last commit, those it has yet to read, and what the stages before it
    /// have yet to give it. A stage's records are stamped no earlier than the records they
    /// come from (a rekeyed row keeps its time, a joined row takes the later of its sides').
    pub fn bound(&self) -> Result<Option<i64>> {
        let mut next = self
            .pending
            .lock()
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .min()
            .filter(|&t| t != i64::MAX);
        let inputs = self.inputs.lock().clone();
        for (clock, p, position) in inputs {
            let head = clock.head(p, position.load(Ordering::Acquire))?;
            next = super::turns::earliest(next, head);
        }
        let upstream = self.upstream.lock().clone();
        for stage in upstream {
            next = super::turns::earliest(next, stage.bound()?);
        }
        Ok(next)
    }

    /// The topics this stage reads, and those the stages before it read: appends to them may
    /// move [`StageProgress::bound`].
    pub(super) fn topics(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<Arc<Topic>> = Vec::new();
        for (clock, _, _) in self.inputs.lock().iter() {
            if !topics.iter().any(|t| t.name() == clock.topic().name()) {
                topics.push(clock.topic().clone());
            }
        }
        for stage in self.upstream.lock().iter() {
            for t in stage.topics() {
                if !topics.iter().any(|u| u.name() == t.name()) {
                    topics.push(t);
                }
            }
        }
        topics
    }
}

impl Pipeline {
    /// Makes this task part of a sub-topology that feeds another through its sink (a
    /// repartition topic): it publishes its progress in `progress` for the tasks that read
    /// the topic, and its output is not the query's. Call it once its inputs are added.
    pub fn feeding(mut self, progress: Arc<StageProgress>, reports_as: &str) -> Pipeline {
        self.reports_as = reports_as.to_string();
        for input in &mut self.inputs {
            for &p in &input.parts {
                let at = Arc::new(AtomicU64::new(input.positions[p]));
                progress.input(input.clock.clone(), p as u32, at.clone());
                input.read[p] = Some(at);
            }
            if let Some(stage) = &input.fed_by {
                progress.fed_by(stage.clone());
            }
        }
        let slot = progress.task_slot();
        self.publishes = Some((progress, slot));
        self
    }

    /// Input `i` is written by another sub-topology, whose tasks publish their progress in
    /// `stage`: its records are a repartition topic's, not the query's records in, and a join
    /// reading in event time waits for what the stage may still write.
    pub fn fed_by(mut self, i: usize, stage: Arc<StageProgress>) -> Pipeline {
        self.inputs[i].fed_by = Some(stage);
        self
    }

    /// For a stage: publishes how far it has read, and the earliest time it holds
    /// uncommitted.
    pub(super) fn publish_progress(&mut self) {
        let Some((_, pending)) = &self.publishes else {
            return;
        };
        // Committed output that another writer's open transaction still hides.
        self.hidden.retain(|(p, end, _)| p.end_offset() < *end);
        for input in &self.inputs {
            for &p in &input.parts {
                if let Some(slot) = &input.read[p] {
                    slot.store(input.positions[p], Ordering::Release);
                }
            }
        }
        let hidden = self.hidden.iter().map(|(_, _, t)| *t).min();
        let min = super::turns::earliest(self.uncommitted.min_time, hidden).unwrap_or(i64::MAX);
        pending.store(min, Ordering::Release);
    }
}
