//! A stateful pipeline's output is pending until its commit: readers of the sink never see
//! what a crash could still cut off, and the commit comes when the pipeline runs out of input
//! or an operator asks for it (`Operator::wants_commit`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use eddy_engine::state::{StateDb, StateOptions};
use eddy_engine::{
    Codec, EventTime, Format, Operator, OperatorContext, Pipeline, ProcessingLog, Sink, Source,
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
        self.seen.lock().unwrap().push(seen);
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
    let fields = vec![Field::new("V", DataType::Int64, true)];
    let source = Source::new(
        s.input.clone(),
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
fn a_restart_cuts_output_that_was_never_committed() {
    let s = setup();
    let (mut pipeline, _) = pipeline(&s, false);
    pipeline
        .run_available(&s.log, &ProcessingLog::new(s.log.clone()))
        .unwrap();
    // A crash after appending more output but before committing it.
    let out = s.output.partition(0).unwrap().clone();
    out.append_pending(&[Record::new(None::<&str>, Some("{\"V\":-1}"), 0)])
        .unwrap();
    drop(pipeline);
    let (pipeline, _) = self::pipeline(&s, false);
    assert_eq!(pipeline.discard_uncommitted_output(true).unwrap(), 1);
    assert_eq!((out.end_offset(), out.written_offset()), (25_000, 25_000));
}
