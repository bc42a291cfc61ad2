//! A pipeline: a source topic, a chain of operators and a sink topic, run as one query.
//!
//! [`Pipeline::run_available`] processes everything readable now, partition by partition, in
//! offset order, and returns: that is the deterministic step the test driver uses, and the
//! body of the loop a runtime task runs. Within a partition the output keeps input order. The
//! input position is committed (as consumer group `<query id>`) only after the output of what
//! it covers has been appended, so a crash can repeat output but never lose it. A stateful query
//! instead commits its state, input position and output end together, which makes it exactly
//! once (ARCHITECTURE.md, "Exactly-once"); when it commits is the subject of `commit.rs`.
//! Sources and sinks are in [`crate::source`] and [`crate::sink`].

mod commit;
mod seed;
mod turns;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use eddy_log::{Log, ReadLimits, TopicPartition};
use eddy_state::{Commit, StateDb};

use commit::Uncommitted;
pub use commit::DEFAULT_COMMIT_INTERVAL;
use turns::earliest;

use crate::error::Result;
use crate::metrics::QueryMetrics;
use crate::operator::{Operator, OperatorContext};
use crate::processing_log::ProcessingLog;
pub use crate::sink::{AppendMode, Sink, WindowedKey};
pub use crate::source::{EventTime, HeaderColumn, Source, SourceWindow};

/// The name under which a stateful query's input position is committed with its state.
fn input_position(topic: &str, partition: u32) -> String {
    format!("input/{topic}/{partition}")
}

/// Where a query starts reading each partition of `source`: its committed position (with its
/// state for a stateful query, else its consumer group's), or else the start or the end.
fn start_positions(
    log: &Log,
    id: &str,
    source: &Source,
    from_beginning: bool,
    state: Option<&StateDb>,
) -> Result<Vec<u64>> {
    let mut positions = Vec::new();
    for p in source.topic.partitions() {
        let stored = match state {
            Some(db) => db.offset(id, &input_position(source.topic.name(), p.id()))?,
            None => log.committed_offset(id, &TopicPartition::new(source.topic.name(), p.id())),
        };
        positions.push(stored.unwrap_or(if from_beginning {
            p.start_offset()
        } else {
            p.end_offset()
        }));
    }
    Ok(positions)
}

/// The name under which a stateful query records how far its committed output reaches.
fn output_end(topic: &str, partition: u32) -> String {
    format!("output/{topic}/{partition}")
}

/// One input of a pipeline: a source, the operators its batches go through before the
/// pipeline's own, and how far each of its partitions has been read.
struct Input {
    source: Source,
    operators: Vec<Box<dyn Operator>>,
    positions: Vec<u64>,
    /// The stage that writes this input's topic (a repartition topic): run first, in the
    /// same task, each committing on its own. See [`Pipeline::with_upstream`].
    upstream: Option<Box<Pipeline>>,
    /// By partition, where the records that only build the input's operators' state end (see
    /// `seed.rs`); empty for an input without such records.
    seed_until: Vec<u64>,
    /// A table the input's operators keep a copy of (`seed.rs`): read to its end first in each
    /// turn.
    table: bool,
}

/// A running query: its inputs (one source, or two for a join), operators, sink.
pub struct Pipeline {
    pub id: String,
    /// The query whose records this pipeline reports to the processing log: its own id, or
    /// for an upstream stage the query it serves.
    reports_as: String,
    inputs: Vec<Input>,
    pub operators: Vec<Box<dyn Operator>>,
    /// Where the results go; `None` for a pipeline whose last operator keeps them itself (a
    /// table's materialization).
    pub sink: Option<Sink>,
    /// For a stateful query: where its state and input positions commit together.
    state: Option<StateDb>,
    /// A transient query (a push query, and the stages that feed one) commits nothing: it
    /// leaves no trace in the log once it ends.
    transient: bool,
    /// For a push query: the output batches not yet taken.
    collected: Option<Vec<RecordBatch>>,
    metrics: Arc<QueryMetrics>,
    commit_interval: Duration,
    /// A stateful query's work since its last commit.
    uncommitted: Uncommitted,
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
        let positions = start_positions(log, &id, &source, from_beginning, state.as_ref())?;
        if let (Some(db), Some(sink)) = (&state, &sink) {
            // A new stateful query records where its sink ends before it writes anything, so
            // that recovery knows which records past that are its own.
            let mut commit = Commit::new();
            for p in sink.topic.partitions() {
                let name = output_end(sink.topic.name(), p.id());
                if db.offset(&id, &name)?.is_none() {
                    commit.set_offset(&id, &name, p.written_offset());
                }
            }
            db.commit(commit)?;
        }
        Ok(Pipeline {
            metrics: Arc::new(QueryMetrics::starting_at(&positions)),
            reports_as: id.clone(),
            id,
            inputs: vec![Input {
                source,
                operators: Vec::new(),
                positions,
                upstream: None,
                seed_until: Vec::new(),
                table: false,
            }],
            operators,
            sink,
            state,
            transient: false,
            collected: None,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            uncommitted: Uncommitted::new(),
        })
    }

    /// Adds an input: `source`, whose batches go through `operators` before the pipeline's
    /// own (the other side of a table-table join). It starts as the first input did.
    pub fn with_input(
        mut self,
        log: &Log,
        source: Source,
        operators: Vec<Box<dyn Operator>>,
        from_beginning: bool,
    ) -> Result<Pipeline> {
        let positions =
            start_positions(log, &self.id, &source, from_beginning, self.state.as_ref())?;
        self.inputs.push(Input {
            source,
            operators,
            positions,
            upstream: None,
            seed_until: Vec::new(),
            table: false,
        });
        Ok(self)
    }

    /// Operators for the first input's batches only, before the pipeline's own (the left
    /// side of a join).
    pub fn with_input_operators(mut self, operators: Vec<Box<dyn Operator>>) -> Pipeline {
        self.inputs[0].operators = operators;
        self
    }

    /// How long a stateful query may go between commits while input keeps coming (see the
    /// module docs).
    pub fn with_commit_interval(mut self, interval: Duration) -> Pipeline {
        self.commit_interval = interval;
        self
    }

    /// Makes `upstream` the stage that feeds input `i`: a query whose records go through a
    /// repartition topic, `upstream` writing it keyed by the new key, this pipeline reading
    /// it. Both are stateful, so each stage is exactly-once and this one only reads what
    /// `upstream` committed. (Or both are transient: a push query's n-way join steps, which
    /// [`Pipeline::run_step`] runs in turn.) For the first input, the query's progress (lag) is `upstream`'s
    /// position in the query's source, counted as consumed once this stage has caught up.
    pub fn with_upstream(mut self, i: usize, mut upstream: Pipeline) -> Pipeline {
        upstream.report_as(&self.reports_as);
        self.inputs[i].upstream = Some(Box::new(upstream));
        self
    }

    /// Makes this stage, and the stages that feed it, report as the query `id`.
    fn report_as(&mut self, id: &str) {
        self.reports_as = id.to_string();
        for stage in self.inputs.iter_mut().filter_map(|i| i.upstream.as_mut()) {
            stage.report_as(id);
        }
    }

    /// The first input's source.
    pub fn source(&self) -> &Source {
        &self.inputs[0].source
    }

    /// How much has been appended to each input, to wait on with [`Pipeline::wait_for_input`].
    pub fn activity(&self) -> Vec<u64> {
        self.inputs
            .iter()
            .flat_map(|i| match &i.upstream {
                Some(upstream) => upstream.activity(),
                None => vec![i.source.topic.activity()],
            })
            .collect()
    }

    /// Waits until an input is appended to after `seen` (from [`Pipeline::activity`]), or
    /// `timeout` passes.
    pub fn wait_for_input(&self, seen: &[u64], timeout: std::time::Duration) {
        if let [input @ Input { upstream: None, .. }] = self.inputs.as_slice() {
            input
                .source
                .topic
                .wait_for_activity_blocking(seen[0], timeout);
            return;
        }
        // Several topics: look at each in turn, often enough for a join's latency.
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline && self.activity() == seen {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
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
        pipeline.transient = true;
        pipeline.collected = Some(Vec::new());
        Ok(pipeline)
    }

    /// A stage that feeds a transient query through a topic of the query's own (a step of an
    /// n-way join in a push query, see [`Pipeline::with_upstream`]): it writes `sink` and, like
    /// the query, commits nothing.
    pub fn transient_stage(
        log: &Log,
        id: String,
        source: Source,
        operators: Vec<Box<dyn Operator>>,
        sink: Sink,
        from_beginning: bool,
    ) -> Result<Pipeline> {
        let mut pipeline =
            Pipeline::new(log, id, source, operators, Some(sink), from_beginning, None)?;
        pipeline.transient = true;
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
    /// that produced it will be processed again). Only for a query that is its sink's
    /// `only_writer`: the records past its committed end are then all its own. An upstream
    /// stage's repartition topic has no other writer and is always cut back. Returns how many
    /// records were dropped.
    pub fn discard_uncommitted_output(&self, only_writer: bool) -> Result<u64> {
        let mut dropped = 0;
        for upstream in self.inputs.iter().filter_map(|i| i.upstream.as_ref()) {
            dropped += upstream.discard_uncommitted_output(true)?;
        }
        let (Some(db), Some(sink), true) = (&self.state, &self.sink, only_writer) else {
            return Ok(dropped);
        };
        for p in sink.topic.partitions() {
            if let Some(end) = db.offset(&self.id, &output_end(sink.topic.name(), p.id()))? {
                dropped += p.truncate_to(end)?;
            }
        }
        Ok(dropped)
    }

    /// The operator graph, one line per node from source to sink.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for input in &self.inputs {
            if let Some(upstream) = &input.upstream {
                lines.extend(upstream.describe());
            }
            lines.push(format!(
                "Source: topic {} ({} key, {} value)",
                input.source.topic.name(),
                input.source.key.format.name(),
                input.source.value.format.name()
            ));
            lines.extend(input.operators.iter().map(|o| o.describe()));
        }
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
    ///
    /// With several inputs (a join), the inputs take turns a read at a time, so that a backlog
    /// on one side does not race ahead of the other: a join's stream time, shared by its
    /// inputs, would otherwise expire the other side's records before they are read.
    pub fn run_available(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        let staged = self.inputs.iter().any(|i| i.upstream.is_some());
        let consumed = if self.inputs.len() == 1 && !staged {
            // A read from each partition in turn, counted as it goes: records in (and so a
            // backlog's progress) move while a large backlog is read, and no partition is
            // read to its end before the others start.
            let mut consumed = 0;
            loop {
                let (n, sourced) = self.run_reads(log, plog, 1)?;
                self.metrics.records_in.add(sourced as u64);
                if n == 0 {
                    break consumed;
                }
                consumed += n;
            }
        } else {
            // Inputs take turns, and an upstream stage reads once from each partition per turn,
            // so that a backlog flows through all stages together. A stage reads the rows of
            // the one before once that commits them: at its interval, or when it runs dry.
            // A turn in which nothing was read may still have committed a stage, making its
            // output readable: only a second such turn in a row means all is read.
            let (mut consumed, mut idle) = (0, false);
            loop {
                let (n, sourced) = self.run_turn(log, plog)?;
                self.metrics.records_in.add(sourced as u64);
                if n == 0 && idle {
                    break consumed;
                }
                idle = n == 0;
                consumed += n;
            }
        };
        self.commit(log, plog)?;
        if self.inputs[0].upstream.is_some() {
            for (p, &position) in self.source_positions().iter().enumerate() {
                self.metrics.set_position(p as u32, position);
            }
        }
        Ok(consumed)
    }

    /// Processes at most one read's worth of records from each stream partition (a table
    /// input is read to its end), so that a caller that shows results as they come (a push
    /// query) neither waits for a whole backlog nor starves a partition. The stages that feed it step first. Returns how many input
    /// records were consumed.
    pub fn run_step(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        let (consumed, sourced) = self.run_turn(log, plog)?;
        self.metrics.records_in.add(sourced as u64);
        Ok(consumed)
    }

    /// The positions in the query's first source: the first input's, or those of the stage
    /// that feeds it.
    fn source_positions(&self) -> &[u64] {
        match &self.inputs[0].upstream {
            Some(upstream) => upstream.source_positions(),
            None => &self.inputs[0].positions,
        }
    }

    /// Reads and processes one batch of input `i`'s partition `p`; `None` at its end.
    fn step(
        &mut self,
        log: &Log,
        plog: &ProcessingLog,
        i: usize,
        p: usize,
    ) -> Result<Option<usize>> {
        let input = &mut self.inputs[i];
        let partition = input.source.topic.partition(p as u32)?.clone();
        let records = match partition.read(input.positions[p], ReadLimits::default()) {
            Ok(r) => r,
            Err(eddy_log::LogError::OffsetOutOfRange { start, .. })
                if input.positions[p] < start =>
            {
                input.positions[p] = start;
                return Ok(Some(0));
            }
            Err(e) => return Err(e.into()),
        };
        let mut records = records;
        if records.is_empty() {
            return Ok(None);
        }
        let seed = self.seeding(i, p);
        match seed {
            Some(until) => {
                records.retain(|r| r.offset < until);
                if records.is_empty() {
                    // The seed ends in a gap of offsets (a compacted table).
                    self.inputs[i].positions[p] = until;
                    return Ok(Some(0));
                }
            }
            // Every table is whole before any input reads past its seed: a live change must
            // not meet a copy of the other table that is still being seeded.
            None if self.any_seeding() => return Ok(None),
            None => {}
        }
        if let Some(tolerance) = self.skew_tolerance_ms() {
            // Event-time order across a join's inputs: take this partition's records only up
            // to the time of the next record waiting elsewhere, plus what the operators
            // tolerate. None: another input's record comes first. The partition whose next
            // record is the earliest can always read (tolerances are not negative), so the
            // pipeline still progresses.
            if let Some(next) = self.next_time_elsewhere(i, p)? {
                let horizon = next.saturating_add(tolerance);
                let keep = records
                    .iter()
                    .take_while(|r| r.record.timestamp <= horizon)
                    .count();
                if keep == 0 {
                    return Ok(None);
                }
                records.truncate(keep);
            }
        }
        let input = &mut self.inputs[i];
        let Some(last) = records.last().map(|r| r.offset) else {
            return Ok(None);
        };
        let topic = input.source.topic.name().to_string();
        let ctx = OperatorContext {
            query_id: &self.reports_as,
            source_topic: &topic,
            processing_log: plog,
        };
        let mut batch = input
            .source
            .decode(p as u32, &records, &self.reports_as, plog)?;
        for op in input.operators.iter_mut() {
            if batch.num_rows() == 0 {
                break;
            }
            batch = op.process(batch, &ctx)?;
        }
        if seed.is_some() {
            // Seed records build the input's operators' state and go no further.
            batch = batch.slice(0, 0);
        }
        for op in self.operators.iter_mut() {
            if batch.num_rows() == 0 {
                break;
            }
            batch = op.process(batch, &ctx)?;
        }
        self.metrics.records_out.add(batch.num_rows() as u64);
        let mode = match self.state.is_some() {
            true => AppendMode::Pending,
            false => AppendMode::Acknowledged,
        };
        let ends = match &self.sink {
            Some(sink) if batch.num_rows() > 0 => {
                sink.write(&batch, &self.reports_as, plog, mode)?
            }
            _ => Vec::new(),
        };
        input.positions[p] = last + 1;
        // The metrics' positions (for lag) are the first input's.
        let track = |metrics: &QueryMetrics| {
            if i == 0 {
                metrics.set_position(p as u32, last + 1);
            }
        };
        if self.transient {
            if let Some(out) = &mut self.collected {
                if batch.num_rows() > 0 {
                    out.push(batch);
                }
            }
            track(&self.metrics);
            // A transient query is its stages' topics' only reader, and commits nothing.
            if self.inputs[i].upstream.is_some() {
                let partition = self.inputs[i].source.topic.partition(p as u32)?;
                partition.delete_before(last + 1)?;
            }
            return Ok(Some(records.len()));
        }
        if self.state.is_some() {
            self.uncommitted.records += records.len() as u64;
            let first = records.iter().map(|r| r.record.timestamp).min();
            self.uncommitted.min_time = earliest(self.uncommitted.min_time, first);
            self.uncommitted.sink_ends.extend(ends);
            if self.commit_due() {
                self.commit(log, plog)?;
            }
            return Ok(Some(records.len()));
        }
        log.commit_offsets(
            &self.id,
            &[(TopicPartition::new(&topic, p as u32), last + 1)],
        )?;
        // Only now is what was read reflected in the output and the state (a caller that
        // waits for lag 0 may then read either).
        track(&self.metrics);
        Ok(Some(records.len()))
    }
}
