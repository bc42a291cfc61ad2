//! Which input a pipeline reads next, and how far.
//!
//! A pipeline with several inputs, or with stages before it, reads in *turns*
//! ([`Pipeline::run_turn`]): the stages that feed it take theirs first, then it reads once from
//! each stream partition and to its end from each table input (a join's copy of a table, so
//! that a stream record meets every table row appended before it was read). A join read in
//! event time (stream-stream) also takes a partition's records only up to the time of the
//! next record any other input may yet give it, plus its grace (`skew_tolerance_ms`); an input
//! a stage feeds may yet give what the stage has read but not committed, or not read yet
//! (`next_output_bound`).

use eddy_log::Log;

use super::{Input, Pipeline};
use crate::error::Result;
use crate::processing_log::ProcessingLog;

/// How many reads a table input gets in a turn: to its end, in practice, but a turn still ends
/// while a table is appended to faster than it is read.
const TABLE_READS_PER_TURN: usize = 1_000;

/// The earlier of two optional times.
pub(super) fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Input {
    /// The event time of the next unread record of partition `q`, if it has one.
    fn head_time(&self, q: usize) -> Result<Option<i64>> {
        self.clock.head(q as u32, self.positions[q])
    }
}

impl Pipeline {
    /// One turn of a pipeline and the stages that feed it: each stage's turn first (a stage
    /// that read nothing commits), then one read from each of this one's partitions. Returns
    /// the records consumed, and how many of them were read from sources rather than from a
    /// stage's topic (the query's records in).
    pub(super) fn run_turn(&mut self, log: &Log, plog: &ProcessingLog) -> Result<(usize, usize)> {
        let (mut consumed, mut sourced) = (0, 0);
        for stage in self.inputs.iter_mut().filter_map(|i| i.upstream.as_mut()) {
            let (read, from_sources) = stage.run_turn(log, plog)?;
            if read == 0 {
                stage.commit(log, plog)?;
            }
            consumed += read;
            sourced += from_sources;
        }
        let (read, from_sources) = self.run_reads(log, plog, 1)?;
        Ok((consumed + read, sourced + from_sources))
    }

    /// Up to `reads` reads from each partition of each input; returns the records consumed,
    /// and how many of them came from inputs no stage feeds.
    pub(super) fn run_reads(
        &mut self,
        log: &Log,
        plog: &ProcessingLog,
        reads: usize,
    ) -> Result<(usize, usize)> {
        let (mut consumed, mut sourced) = (0, 0);
        // Tables first, to their end: a stream record then meets every table row appended
        // before it was read.
        let tables = (0..self.inputs.len()).filter(|&i| self.inputs[i].table);
        let others = (0..self.inputs.len()).filter(|&i| !self.inputs[i].table);
        let order: Vec<usize> = tables.chain(others).collect();
        for i in order {
            let reads = match self.inputs[i].table {
                true => TABLE_READS_PER_TURN,
                false => reads,
            };
            for k in 0..self.inputs[i].parts.len() {
                let p = self.inputs[i].parts[k];
                for _ in 0..reads {
                    let Some(n) = self.step(log, plog, i, p)? else {
                        break;
                    };
                    consumed += n;
                    if !self.inputs[i].staged() {
                        sourced += n;
                    }
                }
            }
        }
        Ok((consumed, sourced))
    }

    /// How far one input may run ahead of the others in event time (`None`: without limit).
    pub(super) fn skew_tolerance_ms(&self) -> Option<i64> {
        self.inputs
            .iter()
            .flat_map(|i| i.operators.iter())
            .chain(self.operators.iter())
            .filter_map(|o| o.skew_tolerance_ms())
            .min()
    }

    /// The smallest time of the next record of every input partition but input `i`'s
    /// partition `p`, if any has one: of the next unread one, or for an input a stage feeds,
    /// of the next the stage may yet make readable.
    pub(super) fn next_time_elsewhere(&self, i: usize, p: usize) -> Result<Option<i64>> {
        let mut next: Option<i64> = None;
        for (j, input) in self.inputs.iter().enumerate() {
            for &q in &input.parts {
                if (j, q) != (i, p) {
                    next = earliest(next, input.head_time(q)?);
                }
            }
            if let Some(stage) = &input.upstream {
                next = earliest(next, stage.next_output_bound()?);
            }
            if let Some(stage) = &input.fed_by {
                next = earliest(next, stage.bound()?);
            }
        }
        Ok(next)
    }

    /// A lower bound of the time of every record this stage has yet to make readable in its
    /// sink: those from the input it read since its last commit, and from the input it has
    /// yet to read (its own, and what the stages before it have yet to give it). A stage's
    /// records are stamped no earlier than the records they come from: a rekeyed row keeps its
    /// time, a joined row takes the later of its sides'.
    fn next_output_bound(&self) -> Result<Option<i64>> {
        let mut next = self.uncommitted.min_time;
        for input in &self.inputs {
            for &q in &input.parts {
                next = earliest(next, input.head_time(q)?);
            }
            if let Some(stage) = &input.upstream {
                next = earliest(next, stage.next_output_bound()?);
            }
        }
        Ok(next)
    }
}
