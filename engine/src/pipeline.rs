//! A pipeline: a source topic, a chain of operators and a sink topic, run as one query.
//!
//! [`Pipeline::run_available`] processes everything readable now, partition by partition, in
//! offset order, and returns: that is the deterministic step the test driver uses, and the
//! body of the loop a runtime task runs. Within a partition the output keeps input order. The
//! input position is committed (as consumer group `<query id>`) only after the output of what
//! it covers has been appended, so a crash can repeat output but never lose it (at least once;
//! exactly once is a later step, see ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array, ListBuilder,
    RecordBatch, StringBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, SchemaRef, TimestampMillisecondType,
};
use datafusion::common::ScalarValue;
use eddy_log::{Header, Log, ReadLimits, Record, StoredRecord, Topic, TopicPartition};
use eddy_state::{Commit, StateDb};

use crate::error::{EngineError, Result};
use crate::format::Codec;
use crate::operator::{Operator, OperatorContext};
use crate::processing_log::{ProcessingLog, RecordOrigin};
use crate::schema::{headers_type, source_schema, PSEUDO_COLUMNS};
use crate::time_format::TimestampFormat;

/// Where a source record's event time comes from.
#[derive(Clone, Debug)]
pub enum EventTime {
    /// The record's own timestamp.
    RecordTimestamp,
    /// A column, by index among the key then value columns: BIGINT milliseconds, TIMESTAMP, or
    /// STRING read with `format`.
    Column {
        index: usize,
        format: Option<TimestampFormat>,
    },
}

/// A column filled from the record's headers.
#[derive(Clone, Debug)]
pub struct HeaderColumn {
    pub field: Field,
    /// `HEADER('name')`: the last header of that name, as BYTES; `None` for `HEADERS`: all of
    /// them as `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
    pub name: Option<String>,
}

/// How to read a topic into batches.
pub struct Source {
    pub topic: Arc<Topic>,
    pub key: Codec,
    pub value: Codec,
    pub header_columns: Vec<HeaderColumn>,
    pub event_time: EventTime,
    /// A table's changelog has no meaning for a null key: such records are reported and skipped.
    pub drop_null_keys: bool,
    /// The topic's keys carry window bounds.
    window: Option<SourceWindow>,
    schema: SchemaRef,
}

/// How a windowed source's keys carry their window, as [`WindowedKey`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceWindow {
    /// Key bytes, then the start; the end is start + size.
    Time { size_ms: i64 },
    /// Key bytes, then the end, then the start.
    Session,
}

impl SourceWindow {
    /// Splits a windowed key into the key's own bytes and the window's (start, end).
    fn split(self, key: &[u8]) -> Option<(&[u8], i64, i64)> {
        let be = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
        let n = key.len();
        match self {
            SourceWindow::Time { size_ms } if n >= 8 => {
                let start = be(&key[n - 8..]);
                Some((&key[..n - 8], start, start + size_ms))
            }
            SourceWindow::Session if n >= 16 => {
                Some((&key[..n - 16], be(&key[n - 8..]), be(&key[n - 16..n - 8])))
            }
            _ => None,
        }
    }
}

impl Source {
    pub fn new(
        topic: Arc<Topic>,
        key: Codec,
        value: Codec,
        header_columns: Vec<HeaderColumn>,
        event_time: EventTime,
    ) -> Source {
        let header_fields: Vec<Field> = header_columns.iter().map(|h| h.field.clone()).collect();
        let schema = source_schema(&key.fields, &value.fields, &header_fields, false);
        Source {
            topic,
            key,
            value,
            header_columns,
            event_time,
            drop_null_keys: false,
            window: None,
            schema,
        }
    }

    /// Reads the topic's keys as windowed keys: the batches get `WINDOWSTART` and `WINDOWEND`.
    pub fn with_window(mut self, window: SourceWindow) -> Source {
        let header_fields: Vec<Field> = self
            .header_columns
            .iter()
            .map(|h| h.field.clone())
            .collect();
        self.schema = source_schema(&self.key.fields, &self.value.fields, &header_fields, true);
        self.window = Some(window);
        self
    }

    /// See [`crate::schema`]: pseudo-columns, keys, values, header columns, hidden columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Decodes records of one partition into a batch; records that do not decode go to the
    /// processing log.
    pub fn decode(
        &self,
        partition: u32,
        records: &[StoredRecord],
        query: &str,
        plog: &ProcessingLog,
    ) -> Result<RecordBatch> {
        let width = self.key.fields.len() + self.value.fields.len();
        let mut columns: Vec<Vec<ScalarValue>> = (0..width)
            .map(|_| Vec::with_capacity(records.len()))
            .collect();
        let (mut rowtime, mut offsets) = (
            Vec::with_capacity(records.len()),
            Vec::with_capacity(records.len()),
        );
        let mut null_value = Vec::with_capacity(records.len());
        let (mut window_starts, mut window_ends) = (Vec::new(), Vec::new());
        let mut headers: Vec<&[Header]> = Vec::with_capacity(records.len());
        for r in records {
            if self.drop_null_keys && r.record.key.is_none() {
                let origin = RecordOrigin {
                    topic: self.topic.name().to_string(),
                    partition,
                    offset: r.offset,
                };
                plog.report(
                    query,
                    Some(&origin),
                    "a table record with a null key was skipped",
                )?;
                continue;
            }
            let origin = || RecordOrigin {
                topic: self.topic.name().to_string(),
                partition,
                offset: r.offset,
            };
            let mut key_bytes = r.record.key.as_deref();
            let mut window = (0, 0);
            if let (Some(w), Some(k)) = (self.window, key_bytes) {
                match w.split(k) {
                    Some((k, start, end)) => {
                        key_bytes = Some(k);
                        window = (start, end);
                    }
                    None => {
                        plog.report(
                            query,
                            Some(&origin()),
                            "the key is too short for a windowed key",
                        )?;
                        continue;
                    }
                }
            }
            let decoded = self
                .key
                .decode(key_bytes)
                .map_err(|e| format!("cannot deserialize the key: {e}"))
                .and_then(|k| {
                    let v = self
                        .value
                        .decode(r.record.value.as_deref())
                        .map_err(|e| format!("cannot deserialize the value: {e}"))?;
                    Ok((k, v))
                });
            let (k, v) = match decoded {
                Ok(kv) => kv,
                Err(e) => {
                    plog.report(query, Some(&origin()), &e)?;
                    continue;
                }
            };
            let ts = match &self.event_time {
                EventTime::RecordTimestamp => Some(r.record.timestamp),
                EventTime::Column { index, format } => {
                    let cell = if *index < k.len() {
                        &k[*index]
                    } else {
                        &v[*index - k.len()]
                    };
                    match (cell, format) {
                        (ScalarValue::Utf8(Some(text)), Some(f)) => match f.parse_millis(text) {
                            Ok(t) => Some(t),
                            Err(e) => {
                                plog.report(query, Some(&origin()), &e)?;
                                continue;
                            }
                        },
                        (ScalarValue::Int64(t) | ScalarValue::TimestampMillisecond(t, _), _) => *t,
                        _ => None,
                    }
                }
            };
            let Some(ts) = ts.filter(|t| *t >= 0) else {
                plog.report(
                    query,
                    Some(&origin()),
                    "the record has no valid timestamp in its TIMESTAMP column",
                )?;
                continue;
            };
            rowtime.push(ts);
            if self.window.is_some() {
                window_starts.push(window.0);
                window_ends.push(window.1);
            }
            offsets.push(r.offset as i64);
            null_value.push(r.record.value.is_none());
            headers.push(&r.record.headers);
            for (col, val) in columns.iter_mut().zip(k.into_iter().chain(v)) {
                col.push(val);
            }
        }
        let n = rowtime.len();
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(rowtime)),
            Arc::new(Int32Array::from(vec![partition as i32; n])),
            Arc::new(Int64Array::from(offsets)),
        ];
        for (col, field) in columns
            .into_iter()
            .zip(self.schema.fields().iter().skip(PSEUDO_COLUMNS))
        {
            arrays.push(if n == 0 {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(col)?
            });
        }
        for h in &self.header_columns {
            arrays.push(match &h.name {
                None => headers_array(&headers),
                Some(name) => {
                    let mut b = BinaryBuilder::new();
                    for hs in &headers {
                        b.append_option(
                            hs.iter()
                                .rev()
                                .find(|x| &x.name == name)
                                .and_then(|x| x.value.as_deref()),
                        );
                    }
                    Arc::new(b.finish())
                }
            });
        }
        if self.window.is_some() {
            arrays.push(Arc::new(Int64Array::from(window_starts)));
            arrays.push(Arc::new(Int64Array::from(window_ends)));
        }
        arrays.push(Arc::new(BooleanArray::from(null_value)));
        arrays.push(headers_array(&headers));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// A list-of-headers array, one list per row.
fn headers_array(rows: &[&[Header]]) -> ArrayRef {
    let DataType::List(item) = headers_type() else {
        unreachable!("headers are a list")
    };
    let DataType::Struct(fields) = item.data_type().clone() else {
        unreachable!("of structs")
    };
    let mut list = ListBuilder::new(StructBuilder::from_fields(fields, 0)).with_field(item);
    for hs in rows {
        let entries = list.values();
        for h in hs.iter() {
            entries
                .field_builder::<StringBuilder>(0)
                .expect("KEY")
                .append_value(&h.name);
            entries
                .field_builder::<BinaryBuilder>(1)
                .expect("VALUE")
                .append_option(h.value.as_deref());
            entries.append(true);
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

/// The headers in row `row` of a list-of-headers column.
fn headers_at(col: &ArrayRef, row: usize) -> Vec<Header> {
    let Some(list) = col.as_list_opt::<i32>() else {
        return Vec::new();
    };
    if list.is_null(row) {
        return Vec::new();
    }
    let entries = list.value(row);
    let Some(entries) = entries.as_struct_opt() else {
        return Vec::new();
    };
    let (names, values) = (
        entries.column(0).as_string::<i32>(),
        entries.column(1).as_binary::<i32>(),
    );
    (0..entries.len())
        .map(|i| Header {
            name: names.value(i).to_string(),
            value: (!values.is_null(i)).then(|| Bytes::copy_from_slice(values.value(i))),
        })
        .collect()
}

/// How to write a query's output batches to a topic.
pub struct Sink {
    pub topic: Arc<Topic>,
    pub key: Codec,
    pub value: Codec,
    /// Indices in the output batch of the key columns, then of the value columns, in the
    /// codecs' field order.
    pub key_columns: Vec<usize>,
    pub value_columns: Vec<usize>,
    /// Index of the column that gives each record's timestamp: BIGINT or TIMESTAMP, or STRING
    /// read with `timestamp_format`.
    pub timestamp_column: usize,
    pub timestamp_format: Option<TimestampFormat>,
    /// Index of the BOOLEAN column that marks rows whose value is null (written as tombstones).
    pub null_value_column: Option<usize>,
    /// Write a null key when every key column is null. True when the key passes through from a
    /// source, where a null key reads as all-null columns; false for a computed key (PARTITION
    /// BY), whose null columns are written as such.
    pub null_key_if_all_null: bool,
    /// Index of the list-of-headers column whose headers each record gets, if any.
    pub headers_column: Option<usize>,
    /// A windowed table's key carries its window's bounds.
    pub window: Option<WindowedKey>,
}

/// Where a windowed key's bounds are, and how they are written.
///
/// As Kafka Streams serializes them: a time window's key is the key's bytes followed by the
/// window start (8 bytes, big-endian); a session's is the key's bytes, the session end, then its
/// start. Records are partitioned by the key without its window, so that every window of a key
/// is in the same partition.
#[derive(Clone, Copy, Debug)]
pub struct WindowedKey {
    /// Indices of the BIGINT columns with the window's start and end.
    pub start: usize,
    pub end: usize,
    pub session: bool,
}

impl Sink {
    /// Encodes each row and appends them, each to the partition its key chooses. Rows that do
    /// not encode go to the processing log. Returns, for each partition appended to, its end
    /// offset after the append.
    pub fn write(
        &self,
        batch: &RecordBatch,
        query: &str,
        plog: &ProcessingLog,
    ) -> Result<Vec<(u32, u64)>> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let ts_col = batch.column(self.timestamp_column);
        let null_value = self
            .null_value_column
            .map(|i| batch.column(i).as_boolean().clone());
        for row in 0..batch.num_rows() {
            let cell = |i: &usize| ScalarValue::try_from_array(batch.column(*i), row);
            let keys = self
                .key_columns
                .iter()
                .map(cell)
                .collect::<Result<Vec<_>, _>>()?;
            let values = self
                .value_columns
                .iter()
                .map(cell)
                .collect::<Result<Vec<_>, _>>()?;
            // A key whose columns are all null is a null key, whatever the format.
            let key_is_null = self.null_key_if_all_null && keys.iter().all(ScalarValue::is_null);
            let encoded = self
                .key
                .encode(&keys)
                .map(|k| if key_is_null { None } else { k })
                .map_err(|e| format!("cannot serialize the key: {e}"))
                .and_then(|k| {
                    Ok((
                        k,
                        self.value
                            .encode(&values)
                            .map_err(|e| format!("cannot serialize the value: {e}"))?,
                    ))
                });
            let (key, value) = match encoded {
                Ok(kv) => kv,
                Err(e) => {
                    plog.report(query, None, &e)?;
                    continue;
                }
            };
            let value = if null_value.as_ref().is_some_and(|n| n.value(row)) {
                None
            } else {
                value
            };
            // A record's timestamp cannot be negative; a row whose TIMESTAMP column says so is
            // reported rather than written with a made-up time.
            let timestamp = match (&self.timestamp_format, ts_col.as_string_opt::<i32>()) {
                (Some(f), Some(text)) if !text.is_null(row) => f.parse_millis(text.value(row)).ok(),
                _ => timestamp_at(ts_col, row),
            };
            let Some(timestamp) = timestamp.filter(|t| *t >= 0) else {
                plog.report(
                    query,
                    None,
                    "the output TIMESTAMP column is null or negative",
                )?;
                continue;
            };
            let partition = self.topic.partition_for(key.as_deref());
            let key = match (&self.window, key) {
                (Some(w), Some(k)) => {
                    let bound = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(row);
                    let mut bytes = k.to_vec();
                    if w.session {
                        bytes.extend_from_slice(&bound(w.end).to_be_bytes());
                    }
                    bytes.extend_from_slice(&bound(w.start).to_be_bytes());
                    Some(Bytes::from(bytes))
                }
                (_, key) => key,
            };
            let headers = self
                .headers_column
                .map(|i| headers_at(batch.column(i), row))
                .unwrap_or_default();
            by_partition.entry(partition).or_default().push(Record {
                key,
                value,
                timestamp,
                headers,
            });
        }
        let mut ends = Vec::with_capacity(by_partition.len());
        for (p, records) in by_partition {
            ends.push((p, self.topic.partition(p)?.append(&records)?.next_offset()));
        }
        Ok(ends)
    }

    /// Appends one row given as values for the key and value columns (INSERT INTO ... VALUES).
    pub fn write_values(
        &self,
        keys: &[ScalarValue],
        values: &[ScalarValue],
        timestamp: i64,
    ) -> Result<u64> {
        let key = self
            .key
            .encode(keys)
            .map_err(|e| EngineError::Plan(format!("cannot serialize the key: {e}")))?;
        let value = self
            .value
            .encode(values)
            .map_err(|e| EngineError::Plan(format!("cannot serialize the value: {e}")))?;
        let p = self.topic.partition_for(key.as_deref());
        let info = self.topic.partition(p)?.append(&[Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        }])?;
        Ok(info.base_offset)
    }
}

fn timestamp_at(col: &ArrayRef, row: usize) -> Option<i64> {
    if col.is_null(row) {
        return None;
    }
    match col.data_type() {
        DataType::Int64 => Some(col.as_primitive::<Int64Type>().value(row)),
        DataType::Timestamp(_, _) => col
            .as_primitive_opt::<TimestampMillisecondType>()
            .map(|a| a.value(row)),
        _ => None,
    }
}

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
            id,
            source,
            operators,
            sink,
            positions,
            state,
        })
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
        let mut consumed = 0;
        for p in 0..self.positions.len() {
            loop {
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
                let ends = match &self.sink {
                    Some(sink) if batch.num_rows() > 0 => sink.write(&batch, &self.id, plog)?,
                    _ => Vec::new(),
                };
                consumed += records.len();
                self.positions[p] = last + 1;
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
            }
        }
        Ok(consumed)
    }
}
