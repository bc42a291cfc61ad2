//! A pipeline: a source topic, a chain of operators and a sink topic, run as one query.
//!
//! [`Pipeline::run_available`] processes everything readable now, partition by partition, in
//! offset order, and returns: that is the deterministic step the test driver uses, and the
//! body of the loop a runtime task runs. Within a partition the output keeps input order. The
//! input position is committed (as consumer group `<query id>`) only after the output of what
//! it covers has been appended, so a crash can repeat output but never lose it. A stateful query
//! instead commits its state, input position and output end together, which makes it exactly
//! once (ARCHITECTURE.md, "Exactly-once"). Sources and sinks are in [`crate::source`] and
//! [`crate::sink`].

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use eddy_log::{Log, ReadLimits, TopicPartition};
use eddy_state::{Commit, StateDb};

use crate::error::Result;
use crate::metrics::QueryMetrics;
use crate::operator::{Operator, OperatorContext};
use crate::processing_log::ProcessingLog;
pub use crate::sink::{Sink, WindowedKey};
pub use crate::source::{EventTime, HeaderColumn, Source, SourceWindow};

/// The name under which a stateful query's input position is committed with its state.
fn input_position(topic: &str, partition: u32) -> String {
    format!("input/{topic}/{partition}")
}

/// The name under which a stateful query records how far its committed output reaches.
fn output_end(topic: &str, partition: u32) -> String {
    format!("output/{topic}/{partition}")
}

/// A running query: source, operators, sink.
pub struct Pipeline {
    pub id: String,
    pub source: Source,
    pub operators: Vec<Box<dyn Operator>>,
    /// Where the results go; `None` for a pipeline whose last operator keeps them itself (a
    /// table's materialization).
    pub sink: Option<Sink>,
    positions: Vec<u64>,
    /// For a stateful query: where its state and input positions commit together.
    state: Option<StateDb>,
    /// For a transient query (a push query): the output batches not yet taken. A transient
    /// query commits nothing: it leaves no trace in the log once it ends.
    collected: Option<Vec<RecordBatch>>,
    metrics: Arc<QueryMetrics>,
}

impl Pipeline {
    /// A pipeline that starts each partition at the query's committed offset, or else at
    /// `start` (the start or the end of the log, by `auto.offset.reset`).
    ///
    /// A stateful query passes its state database: its input positions are then those its
    /// state was last committed with, so that state and input never disagree after a crash.
    pub fn new(
        log: &Log,
        id: String,
        source: Source,
        operators: Vec<Box<dyn Operator>>,
        sink: Option<Sink>,
        from_beginning: bool,
        state: Option<StateDb>,
    ) -> Result<Pipeline> {
        let mut positions = Vec::new();
        for p in source.topic.partitions() {
            let stored = match &state {
                Some(db) => db.offset(&id, &input_position(source.topic.name(), p.id()))?,
                None => {
                    log.committed_offset(&id, &TopicPartition::new(source.topic.name(), p.id()))
                }
            };
            positions.push(stored.unwrap_or(if from_beginning {
                p.start_offset()
            } else {
                p.end_offset()
            }));
        }
        if let (Some(db), Some(sink)) = (&state, &sink) {
            // A new stateful query records where its sink ends before it writes anything, so
            // that recovery knows which records past that are its own.
            let mut commit = Commit::new();
            for p in sink.topic.partitions() {
                let name = output_end(sink.topic.name(), p.id());
                if db.offset(&id, &name)?.is_none() {
                    commit.set_offset(&id, &name, p.end_offset());
                }
            }
            db.commit(commit)?;
        }
        Ok(Pipeline {
            metrics: Arc::new(QueryMetrics::starting_at(&positions)),
            id,
            source,
            operators,
            sink,
            positions,
            state,
            collected: None,
        })
    }

    /// A transient query (a push query): no sink, no state database, no committed position;
    /// its output is kept for [`Pipeline::take_output`]. It starts at the start or the end of
    /// each partition, by `from_beginning`.
    pub fn transient(
        log: &Log,
        id: String,
        source: Source,
        operators: Vec<Box<dyn Operator>>,
        from_beginning: bool,
    ) -> Result<Pipeline> {
        // An id no group has committed under, so `new` picks the start or the end.
        let mut pipeline = Pipeline::new(log, id, source, operators, None, from_beginning, None)?;
        pipeline.collected = Some(Vec::new());
        Ok(pipeline)
    }

    /// A transient query's output since the last call, in the order it was produced.
    pub fn take_output(&mut self) -> Vec<RecordBatch> {
        self.collected
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The query's counters, shared with whoever shows them.
    pub fn metrics(&self) -> Arc<QueryMetrics> {
        self.metrics.clone()
    }

    /// Exactly-once recovery of a stateful query's output: drops what it appended to its sink
    /// after its last commit (a crash came between the append and the commit, and the input
    /// that produced it will be processed again). Only for a query that is its sink's only
    /// writer: the records past its committed end are then all its own. Returns how many
    /// records were dropped.
    pub fn discard_uncommitted_output(&self) -> Result<u64> {
        let (Some(db), Some(sink)) = (&self.state, &self.sink) else {
            return Ok(0);
        };
        let mut dropped = 0;
        for p in sink.topic.partitions() {
            if let Some(end) = db.offset(&self.id, &output_end(sink.topic.name(), p.id()))? {
                dropped += p.truncate_to(end)?;
            }
        }
        Ok(dropped)
    }

    /// The operator graph, one line per node from source to sink.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Source: topic {} ({} key, {} value)",
            self.source.topic.name(),
            self.source.key.format.name(),
            self.source.value.format.name()
        )];
        lines.extend(self.operators.iter().map(|o| o.describe()));
        if let Some(sink) = &self.sink {
            lines.push(format!(
                "Sink: topic {} ({} key, {} value)",
                sink.topic.name(),
                sink.key.format.name(),
                sink.value.format.name()
            ));
        }
        lines
    }

    /// Processes every record readable now; returns how many input records were consumed.
    pub fn run_available(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        self.run_reads(log, plog, usize::MAX)
    }

    /// Processes at most one read's worth of records from each partition, so that a caller
    /// that shows results as they come (a push query) neither waits for a whole backlog nor
    /// starves a partition. Returns how many input records were consumed.
    pub fn run_step(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        self.run_reads(log, plog, 1)
    }

    fn run_reads(&mut self, log: &Log, plog: &ProcessingLog, reads: usize) -> Result<usize> {
        let mut consumed = 0;
        for p in 0..self.positions.len() {
            for _ in 0..reads {
                let partition = self.source.topic.partition(p as u32)?.clone();
                let records = match partition.read(self.positions[p], ReadLimits::default()) {
                    Ok(r) => r,
                    Err(eddy_log::LogError::OffsetOutOfRange { start, .. })
                        if self.positions[p] < start =>
                    {
                        self.positions[p] = start;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(last) = records.last().map(|r| r.offset) else {
                    break;
                };
                let ctx = OperatorContext {
                    query_id: &self.id,
                    source_topic: self.source.topic.name(),
                    processing_log: plog,
                };
                let mut batch = self.source.decode(p as u32, &records, &self.id, plog)?;
                for op in &mut self.operators {
                    if batch.num_rows() == 0 {
                        break;
                    }
                    batch = op.process(batch, &ctx)?;
                }
                self.metrics.records_in.add(records.len() as u64);
                self.metrics.records_out.add(batch.num_rows() as u64);
                let ends = match &self.sink {
                    Some(sink) if batch.num_rows() > 0 => sink.write(&batch, &self.id, plog)?,
                    _ => Vec::new(),
                };
                consumed += records.len();
                self.positions[p] = last + 1;
                if let Some(out) = &mut self.collected {
                    if batch.num_rows() > 0 {
                        out.push(batch);
                    }
                    self.metrics.set_position(p as u32, last + 1);
                    continue;
                }
                if let Some(db) = &self.state {
                    let mut commit = Commit::new();
                    for op in &mut self.operators {
                        op.checkpoint(&mut commit)?;
                    }
                    commit.set_offset(
                        &self.id,
                        &input_position(self.source.topic.name(), p as u32),
                        last + 1,
                    );
                    if let Some(sink) = &self.sink {
                        for (sp, end) in ends {
                            commit.set_offset(&self.id, &output_end(sink.topic.name(), sp), end);
                        }
                    }
                    db.commit(commit)?;
                }
                log.commit_offsets(
                    &self.id,
                    &[(
                        TopicPartition::new(self.source.topic.name(), p as u32),
                        last + 1,
                    )],
                )?;
                // Only now is what was read reflected in the output and the state (a caller
                // that waits for lag 0 may then read either).
                self.metrics.set_position(p as u32, last + 1);
            }
        }
        Ok(consumed)
    }
}
