//! A stateful pipeline's output is in transactions until its commit: readers of the sink never
//! see what a crash could still cut off, and the commit comes when the pipeline runs out of
//! input or an operator asks for it (`Operator::wants_commit`). After a crash, the session
//! settles the transactions a task left open by what its last commit recorded
//! (`pipeline::committed_outputs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use eddy_engine::pipeline::committed_outputs;
use eddy_engine::state::{StateDb, StateOptions};
use eddy_engine::{
    Codec, EventTime, Format, Operator, OperatorContext, Pipeline, ProcessingLog, Sink, Source,
    TaskId,
};
use eddy_log::{Log, LogOptions, Partition, Record, Topic, TopicConfig};

/// The sink's (readable end, written end) when each batch came.
type Seen = Arc<Mutex<Vec<(u64, u64)>>>;

/// Passes batches through, noting what readers of the sink could see at each one, and asks
/// for a commit when told to.
struct Probe {
    schema: SchemaRef,
    sink: Arc<Partition>,
    seen: Seen,
    commit_every_batch: bool,
    /// Fails on this batch (counted from 0), as a query whose expression throws would.
    fail_on: Option<usize>,
    /// Panics instead of failing, as a bug would.
    panic: bool,
}

impl Operator for Probe {
    fn describe(&self) -> String {
        "Probe".into()
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn process(
        &mut self,
        batch: RecordBatch,
        _: &OperatorContext<'_>,
    ) -> eddy_engine::Result<RecordBatch> {
        let seen = (self.sink.end_offset(), self.sink.written_offset());
        let mut all = self.seen.lock().unwrap();
        if self.fail_on == Some(all.len()) {
            assert!(!self.panic, "the probe panicked");
            return Err(eddy_engine::EngineError::Plan("the probe failed".into()));
        }
        all.push(seen);
        Ok(batch)
    }
    fn wants_commit(&self) -> bool {
        self.commit_every_batch
    }
}

struct Setup {
    log: Log,
    db: StateDb,
    input: Arc<Topic>,
    output: Arc<Topic>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path().join("log"),
        LogOptions {
            background: false,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let db = StateDb::open(
        dir.path().join("state"),
        StateOptions {
            memory_bytes: 64 << 20,
            sync: false,
        },
    )
    .unwrap();
    let input = log.create_topic("in", TopicConfig::default()).unwrap();
    let output = log.create_topic("out", TopicConfig::default()).unwrap();
    // Three reads' worth: a read takes at most 10,000 records.
    let records: Vec<Record> = (0..25_000)
        .map(|i| Record::new(None::<&str>, Some(format!("{{\"V\":{i}}}")), i))
        .collect();
    input.partition(0).unwrap().append(&records).unwrap();
    Setup {
        log,
        db,
        input,
        output,
        _dir: dir,
    }
}

fn pipeline(s: &Setup, commit_every_batch: bool) -> (Pipeline, Seen) {
    pipeline_over(s, s.input.clone(), commit_every_batch)
}

fn pipeline_over(s: &Setup, input: Arc<Topic>, commit_every_batch: bool) -> (Pipeline, Seen) {
    pipeline_with(s, input, commit_every_batch, None)
}

fn pipeline_with(
    s: &Setup,
    input: Arc<Topic>,
    commit_every_batch: bool,
    fail_on: Option<usize>,
) -> (Pipeline, Seen) {
    pipeline_failing(s, input, commit_every_batch, fail_on, false)
}

fn pipeline_failing(
    s: &Setup,
    input: Arc<Topic>,
    commit_every_batch: bool,
    fail_on: Option<usize>,
    panic: bool,
) -> (Pipeline, Seen) {
    let fields = vec![Field::new("V", DataType::Int64, true)];
    let source = Source::new(
        input,
        Codec::new(Format::None, vec![], false).unwrap(),
        Codec::new(Format::Json, fields.clone(), true).unwrap(),
        vec![],
        EventTime::RecordTimestamp,
    );
    let schema = source.schema();
    let column = |name: &str| schema.index_of(name).unwrap();
    let sink = Sink {
        window: None,
        topic: s.output.clone(),
        key: Codec::new(Format::None, vec![], false).unwrap(),
        value: Codec::new(Format::Json, fields, true).unwrap(),
        key_columns: vec![],
        value_columns: vec![column("V")],
        timestamp_column: column("ROWTIME"),
        timestamp_format: None,
        null_value_column: Some(column("__NULL_VALUE")),
        null_key_if_all_null: true,
        headers_column: None,
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe {
        schema: schema.clone(),
        sink: s.output.partition(0).unwrap().clone(),
        seen: seen.clone(),
        commit_every_batch,
        fail_on,
        panic,
    };
    let pipeline = Pipeline::new(
        &s.log,
        "q".into(),
        source,
        vec![Box::new(probe)],
        Some(sink),
        true,
        Some(s.db.clone()),
    )
    .unwrap()
    .with_commit_interval(Duration::from_secs(3600));
    (pipeline, seen)
}

#[test]
fn output_becomes_readable_only_with_the_commit_at_the_end_of_the_input() {
    let s = setup();
    let (mut pipeline, seen) = pipeline(&s, false);
    let consumed = pipeline
        .run_available(&s.log, &ProcessingLog::new(s.log.clone()))
        .unwrap();
    assert_eq!(consumed, 25_000);
    // Each read appended its output, and none of it was readable before the commit.
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, 0), (0, 10_000), (0, 20_000)]
    );
    let out = s.output.partition(0).unwrap();
    assert_eq!((out.end_offset(), out.written_offset()), (25_000, 25_000));
    assert_eq!(
        s.log
            .committed_offset("q", &eddy_log::TopicPartition::new("in", 0)),
        Some(25_000)
    );
}

#[test]
fn an_operator_at_its_bound_gets_a_commit_after_each_read() {
    let s = setup();
    let (mut pipeline, seen) = pipeline(&s, true);
    pipeline
        .run_available(&s.log, &ProcessingLog::new(s.log.clone()))
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, 0), (10_000, 10_000), (20_000, 20_000)]
    );
}

#[test]
fn a_transaction_a_crash_left_open_is_kept_only_if_its_commit_recorded_its_end() {
    let s = setup();
    let (mut pipeline, _) = pipeline(&s, false);
    pipeline
        .run_available(&s.log, &ProcessingLog::new(s.log.clone()))
        .unwrap();
    let out = s.output.partition(0).unwrap().clone();
    // The task's last commit recorded where its output ends.
    let writer = pipeline.writer().unwrap();
    let ends = committed_outputs(&s.db).unwrap();
    assert_eq!(ends.get(&(writer, "out".to_string(), 0)), Some(&25_000));
    // A crash after appending more output but before committing it.
    let mut txn = out.begin(writer);
    txn.append(&[Record::new(None::<&str>, Some("{\"V\":-1}"), 0)])
        .unwrap();
    out.flush().unwrap();
    std::mem::forget(txn);
    drop(pipeline);
    drop(out);
    let Setup {
        log, output, _dir, ..
    } = s;
    drop(output);
    drop(log);
    let log = Log::open(
        _dir.path().join("log"),
        LogOptions {
            background: false,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let out = log.partition("out", 0).unwrap();
    let undecided = out.undecided();
    assert_eq!(undecided.len(), 1);
    assert_eq!((undecided[0].writer, undecided[0].end), (writer, 25_001));
    assert_eq!(out.end_offset(), 25_000, "hidden until settled");
    // The session settles it by the end the task's last commit recorded: aborted, never read.
    out.resolve(writer, 25_000).unwrap();
    assert_eq!((out.end_offset(), out.written_offset()), (25_001, 25_001));
    let read = out.read(24_999, eddy_log::ReadLimits::default()).unwrap();
    assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), [24_999]);
}

/// Two tasks, one per input partition, writing the same sink partition, taking turns and
/// committing after every read: each record's output is there once, and only committed
/// output is ever readable.
#[test]
fn tasks_of_one_query_share_a_sink_partition_through_their_transactions() {
    let s = setup();
    let input = s
        .log
        .create_topic("in2", TopicConfig::with_partitions(2))
        .unwrap();
    for p in 0..2u32 {
        let records: Vec<Record> = (0..15_000)
            .map(|i| {
                Record::new(
                    None::<&str>,
                    Some(format!("{{\"V\":{}}}", i * 2 + p as i64)),
                    i,
                )
            })
            .collect();
        input.partition(p).unwrap().append(&records).unwrap();
    }
    let metrics = Arc::new(eddy_engine::metrics::QueryMetrics::new());
    let mut tasks: Vec<Pipeline> = (0..2)
        .map(|p| {
            let (pipeline, _) = pipeline_over(&s, input.clone(), true);
            pipeline.in_task(TaskId::new(0, Some(p)), metrics.clone())
        })
        .collect();
    let plog = ProcessingLog::new(s.log.clone());
    loop {
        let mut progress = 0;
        for task in &mut tasks {
            progress += task.run_for(&s.log, &plog, Some(Duration::ZERO)).unwrap().0;
            let out = s.output.partition(0).unwrap();
            assert_eq!(
                out.end_offset(),
                out.written_offset(),
                "nothing left pending"
            );
        }
        if progress == 0 {
            break;
        }
    }
    let out = s.output.partition(0).unwrap();
    let mut values = Vec::new();
    let mut at = 0;
    while let Some(last) = out
        .read(at, eddy_log::ReadLimits::default())
        .unwrap()
        .into_iter()
        .map(|r| {
            values.push(r.record.value.unwrap());
            r.offset
        })
        .last()
    {
        at = last + 1;
    }
    assert_eq!(values.len(), 30_000);
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 30_000, "no record's output twice");
    assert_eq!(metrics.position("in2", 0), Some(15_000));
    assert_eq!(metrics.position("in2", 1), Some(15_000));
}

/// A task that fails gives up what it has not committed: its transactions abort, so they hold
/// no reader of its sink back, and it runs no more.
#[test]
fn a_failed_task_aborts_its_open_transactions() {
    let s = setup();
    let (mut pipeline, _) = pipeline_with(&s, s.input.clone(), false, Some(2));
    let plog = ProcessingLog::new(s.log.clone());
    assert!(pipeline.run_available(&s.log, &plog).is_err());
    assert_eq!(pipeline.failure(), Some("the probe failed"));
    let out = s.output.partition(0).unwrap();
    // Two batches' output was written in its transaction, and aborted: nothing is held back.
    assert_eq!((out.end_offset(), out.written_offset()), (20_000, 20_000));
    assert!(out
        .read(0, eddy_log::ReadLimits::default())
        .unwrap()
        .is_empty());
    out.append(&[Record::new(None::<&str>, Some("{\"V\":-1}"), 0)])
        .unwrap();
    assert_eq!(
        out.read(0, eddy_log::ReadLimits::default()).unwrap().len(),
        1
    );
    // It runs no more.
    assert_eq!(pipeline.run_available(&s.log, &plog).unwrap(), 0);
}

#[test]
fn an_operator_that_panics_fails_its_task_as_an_error_would() {
    let s = setup();
    let (mut pipeline, _) = pipeline_failing(&s, s.input.clone(), false, Some(2), true);
    let plog = ProcessingLog::new(s.log.clone());
    let err = pipeline.run_available(&s.log, &plog).unwrap_err();
    assert_eq!(err.to_string(), "internal error: the probe panicked");
    assert_eq!(
        pipeline.failure(),
        Some("internal error: the probe panicked")
    );
    // Its open transaction aborted, as for an error: nothing holds readers back.
    let out = s.output.partition(0).unwrap();
    assert_eq!((out.end_offset(), out.written_offset()), (20_000, 20_000));
    assert_eq!(pipeline.run_available(&s.log, &plog).unwrap(), 0);
}
