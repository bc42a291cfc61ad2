//! A pipeline: a source topic, a chain of operators and a sink topic, run as one task of a
//! query (see [`crate::task`]).
//!
//! [`Pipeline::run_available`] processes everything readable now, partition by partition, in
//! offset order, and returns: that is the deterministic step the test driver uses;
//! [`Pipeline::run_for`] does the same for a while, which is what a stream thread runs. Within
//! a partition the output keeps input order. A task reads only its own partition of each
//! input ([`Pipeline::in_task`]), or every partition for a query that runs as one task.
//!
//! A stateless query is at least once: the input position is committed (as consumer group
//! `<query id>`) only after the output of what it covers has been appended, so a crash can
//! repeat output but never lose it. A stateful query is exactly once: it appends its output in
//! a transaction per sink partition, readable once its commit has committed its state, input
//! positions and output ends together (ARCHITECTURE.md, "Exactly-once"); when it commits is
//! the subject of `commit.rs`. Sources and sinks are in [`crate::source`] and
//! [`crate::sink`].

mod commit;
mod input;
mod progress;
mod seed;
mod turns;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use eddy_log::{Log, ReadLimits};
use eddy_state::StateDb;

use commit::Uncommitted;
pub use commit::{committed_outputs, DEFAULT_COMMIT_INTERVAL};
use input::{input_position, restrict, start_positions, Input};
pub use progress::StageProgress;
use turns::earliest;

use crate::error::{EngineError, Result};
use crate::metrics::QueryMetrics;
use crate::operator::{Operator, OperatorContext};
use crate::processing_log::ProcessingLog;
pub use crate::sink::{Sink, WindowedKey};
pub use crate::source::{EventClock, EventTime, HeaderColumn, Source, SourceWindow};
use crate::task::{TaskId, TaskMetrics};

/// A running query, or one task of it: its inputs (one source, or two for a join),
/// operators, sink.
pub struct Pipeline {
    pub id: String,
    task: TaskId,
    /// The query whose records this pipeline reports to the processing log: its own id, or
    /// for a stage the query it serves.
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
    task_metrics: Arc<TaskMetrics>,
    /// For a stage that feeds another sub-topology: where it publishes its progress, and the
    /// earliest time it holds uncommitted. Its sink is then not the query's output.
    publishes: Option<(Arc<StageProgress>, Arc<AtomicI64>)>,
    commit_interval: Duration,
    /// A stateful query's work since its last commit.
    uncommitted: Uncommitted,
    /// Why it failed, if it did.
    failure: Option<String>,
    /// For a stage: its committed output not readable yet (behind another writer's open
    /// transaction), with the earliest time it may hold (see `progress.rs`).
    hidden: Vec<(Arc<eddy_log::Partition>, u64, i64)>,
}

impl Pipeline {
    /// A pipeline, run as one task over every partition (see [`Pipeline::in_task`]), that
    /// starts each partition at the query's committed offset, or else at `start` (the start or
    /// the end of the log, by `auto.offset.reset`).
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
        let mut pipeline = Pipeline {
            metrics: Arc::new(QueryMetrics::new()),
            task_metrics: Arc::new(TaskMetrics::default()),
            reports_as: id.clone(),
            id,
            task: TaskId::SINGLE,
            inputs: vec![Input::new(source, Vec::new(), positions)],
            operators,
            sink,
            state,
            transient: false,
            collected: None,
            publishes: None,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            uncommitted: Uncommitted::new(),
            failure: None,
            hidden: Vec::new(),
        };
        pipeline.attach_metrics();
        Ok(pipeline)
    }

    /// Makes this pipeline task `task` of its query: it reads only partition `task.partition`
    /// of each input (all of them for `None`), and counts into the query's `metrics`, shared
    /// by its tasks. Call it before adding inputs.
    pub fn in_task(mut self, task: TaskId, metrics: Arc<QueryMetrics>) -> Pipeline {
        self.task = task;
        self.metrics = metrics;
        for input in &mut self.inputs {
            restrict(input, task);
        }
        self.attach_metrics();
        self
    }

    /// Which task of its query this is.
    pub fn task(&self) -> TaskId {
        self.task
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
        let mut input = Input::new(source, operators, positions);
        restrict(&mut input, self.task);
        self.inputs.push(input);
        self.attach_metrics();
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

    /// Makes `upstream` the stage that feeds input `i` in the same task: a transient query's
    /// n-way join steps, each writing a topic of the query's own that the next reads, which
    /// [`Pipeline::run_step`] runs in turn. (A persistent query's stages are tasks of their
    /// own: see [`Pipeline::fed_by`].)
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

    /// How much has been appended to each topic this task's progress depends on: its inputs,
    /// and for an input another sub-topology feeds, what that one reads. A task whose
    /// activity has not moved since it last found nothing to read has nothing to read.
    pub fn activity(&self) -> Vec<u64> {
        self.inputs
            .iter()
            .flat_map(|i| {
                let mut seen = match &i.upstream {
                    Some(upstream) => upstream.activity(),
                    None => vec![i.source.topic.activity()],
                };
                if let Some(stage) = &i.fed_by {
                    seen.extend(stage.topics().iter().map(|t| t.activity()));
                }
                seen
            })
            .collect()
    }

    /// Waits until an input is appended to after `seen` (from [`Pipeline::activity`]), or
    /// `timeout` passes: for a caller that polls one pipeline (a push query).
    pub fn wait_for_input(&self, seen: &[u64], timeout: Duration) {
        if let [input @ Input {
            upstream: None,
            fed_by: None,
            ..
        }] = self.inputs.as_slice()
        {
            input
                .source
                .topic
                .wait_for_activity_blocking(seen[0], timeout);
            return;
        }
        // Several topics: look at each in turn, often enough for a join's latency.
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.activity() == seen {
            std::thread::sleep(Duration::from_millis(5));
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

    /// The query's counters, shared with whoever shows them (and with the query's other
    /// tasks).
    pub fn metrics(&self) -> Arc<QueryMetrics> {
        self.metrics.clone()
    }

    /// This task's own counters.
    pub fn task_metrics(&self) -> Arc<TaskMetrics> {
        self.task_metrics.clone()
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

    /// Processes every record readable now and commits; returns how many input records were
    /// consumed.
    pub fn run_available(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        Ok(self.run_for(log, plog, None)?.0)
    }

    /// Processes records readable now, for up to `budget` (`None`: until none is left), and
    /// commits once none is left (or when a commit is due: see `commit.rs`). Returns how many
    /// input records were consumed, and whether it stopped because none was left.
    ///
    /// With several inputs (a join), the inputs take turns a read at a time, so that a backlog
    /// on one side does not race ahead of the other: a join's stream time, shared by its
    /// inputs, would otherwise expire the other side's records before they are read.
    pub fn run_for(
        &mut self,
        log: &Log,
        plog: &ProcessingLog,
        budget: Option<Duration>,
    ) -> Result<(usize, bool)> {
        if self.failure.is_some() {
            return Ok((0, true));
        }
        // A bug that panics in an operator fails the task as an error would: its open
        // transactions abort and the query shows as failed with the reason, rather than the
        // panic taking the stream thread (and every task on it) down.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_until(log, plog, budget)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(EngineError::Panic(what))
        });
        if let Err(e) = &result {
            self.failure = Some(e.to_string());
            self.abandon();
        }
        result
    }

    /// Why the task stopped, if it failed: it runs no more (a restart resumes it from its
    /// last commit).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// A task that failed gives up its uncommitted work: its open transactions abort (readers
    /// of its sink partitions are not held back by them), and as a stage it no longer holds
    /// the bound of the sub-topology it feeds. A restart reads that input again.
    fn abandon(&mut self) {
        self.uncommitted = Uncommitted::new();
        self.publish_progress();
    }

    /// Commits what the task has done, if anything: before it stops running.
    pub fn commit_now(&mut self, log: &Log, plog: &ProcessingLog) -> Result<()> {
        self.commit(log, plog)
    }

    fn run_until(
        &mut self,
        log: &Log,
        plog: &ProcessingLog,
        budget: Option<Duration>,
    ) -> Result<(usize, bool)> {
        let deadline = budget.map(|b| Instant::now() + b);
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        let nested = self.inputs.iter().any(|i| i.upstream.is_some());
        let (mut consumed, mut idle) = (0, false);
        let drained = loop {
            // A read from each partition in turn, counted as it goes: records in (and so a
            // backlog's progress) move while a large backlog is read, and no partition is
            // read to its end before the others start. Nested stages (a push query's) take
            // their turns first; a turn in which nothing was read may still have committed
            // a stage, making its output readable: only a second such turn in a row means
            // all is read.
            let (n, sourced) = match nested {
                true => self.run_turn(log, plog)?,
                false => self.run_reads(log, plog, 1)?,
            };
            self.metrics.records_in.add(sourced as u64);
            self.task_metrics.records_in.add(n as u64);
            consumed += n;
            if n == 0 && (idle || !nested) {
                break true;
            }
            idle = n == 0;
            if out_of_time() {
                break false;
            }
        };
        if drained {
            self.commit(log, plog)?;
        }
        // What it holds hidden may have become readable meanwhile.
        self.publish_progress();
        Ok((consumed, drained))
    }

    /// Processes at most one read's worth of records from each stream partition (a table
    /// input is read to its end), so that a caller that shows results as they come (a push
    /// query) neither waits for a whole backlog nor starves a partition. The stages that feed
    /// it step first. Returns how many input records were consumed.
    pub fn run_step(&mut self, log: &Log, plog: &ProcessingLog) -> Result<usize> {
        let (consumed, sourced) = self.run_turn(log, plog)?;
        self.metrics.records_in.add(sourced as u64);
        Ok(consumed)
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
        let read = match partition.read_on(input.positions[p], ReadLimits::default()) {
            Ok(r) => r,
            Err(eddy_log::LogError::OffsetOutOfRange { start, .. })
                if input.positions[p] < start =>
            {
                input.positions[p] = start;
                self.uncommitted.moved = true;
                return Ok(Some(0));
            }
            Err(e @ eddy_log::LogError::Corrupt { .. }) => {
                // Damage on disk stops the task until someone repairs the topic. Everything
                // read before it was processed whole: commit it, so that the task resumes at
                // the damage rather than repeating (a stateless task) what it already wrote.
                self.commit(log, plog)?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let mut records = read.records;
        if records.is_empty() {
            // Nothing but aborted transactions' records: read on past them.
            if read.next > input.positions[p] {
                input.positions[p] = read.next;
                self.uncommitted.moved = true;
                return Ok(Some(0));
            }
            return Ok(None);
        }
        let seed = self.seeding(i, p);
        match seed {
            Some(until) => {
                records.retain(|r| r.offset < until);
                if records.is_empty() {
                    // The seed ends in a gap of offsets (a compacted table).
                    self.inputs[i].positions[p] = until;
                    self.uncommitted.moved = true;
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
                let clock = &self.inputs[i].clock;
                let keep = records
                    .iter()
                    .take_while(|r| clock.time_of(r).is_none_or(|t| t <= horizon))
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
        // The earliest event time read: what a stage's output is stamped no earlier than
        // (`progress.rs`). A source's batches carry it as ROWTIME; an internal topic's records
        // were written with it as their timestamp.
        let first_time = match batch.column_by_name(crate::schema::ROWTIME) {
            Some(rowtime) => rowtime
                .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                .and_then(datafusion::arrow::compute::min),
            None => records.iter().map(|r| r.record.timestamp).min(),
        };
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
        // A stage's output is a repartition topic's: its task's, not the query's.
        self.task_metrics.records_out.add(batch.num_rows() as u64);
        if self.publishes.is_none() {
            self.metrics.records_out.add(batch.num_rows() as u64);
        }
        input.positions[p] = last + 1;
        if self.transient {
            if let Some(sink) = self.sink.as_ref().filter(|_| batch.num_rows() > 0) {
                sink.write(&batch, &self.reports_as, plog)?;
            }
            if let Some(out) = &mut self.collected {
                if batch.num_rows() > 0 {
                    out.push(batch);
                }
            }
            self.publish_committed(i);
            // A transient query is its stages' topics' only reader, and commits nothing.
            if self.inputs[i].upstream.is_some() {
                let partition = self.inputs[i].source.topic.partition(p as u32)?;
                partition.delete_before(last + 1)?;
            }
            return Ok(Some(records.len()));
        }
        if self.state.is_some() {
            if let Some(sink) = self.sink.as_ref().filter(|_| batch.num_rows() > 0) {
                let encoded = sink.encode(&batch, &self.reports_as, plog)?;
                self.append_output(encoded)?;
            }
            self.uncommitted.records += records.len() as u64;
            self.uncommitted.min_time = earliest(self.uncommitted.min_time, first_time);
            self.publish_progress();
            if self.commit_due() {
                self.commit(log, plog)?;
            }
            return Ok(Some(records.len()));
        }
        // At least once: the output is readable at once, and the input position is committed
        // (`commit.rs`) once the output it covers is acknowledged, a group commit for many
        // batches rather than one each.
        if let Some(sink) = self.sink.as_ref().filter(|_| batch.num_rows() > 0) {
            let ends = sink.write_unacknowledged(&batch, &self.reports_as, plog)?;
            self.uncommitted.appended(ends);
        }
        self.uncommitted.records += records.len() as u64;
        self.publish_progress();
        if self.commit_due() {
            self.commit(log, plog)?;
        }
        Ok(Some(records.len()))
    }
}
