//! A source: how a query reads a topic's records into Arrow batches (see [`crate::schema`] for
//! their columns), with event time from the record or a column, header columns, and windowed
//! keys split into key and window bounds. Records that cannot be read go to the processing log.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_empty_array, ArrayRef, BinaryBuilder, BooleanArray, Int32Array, Int64Array, ListBuilder,
    RecordBatch, StringBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::common::ScalarValue;
use eddy_log::{Header, StoredRecord, Topic};

use crate::error::{EngineError, Result};
use crate::format::{Codec, Format};
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
    /// A record without a valid event time fails the query (ksqlDB's
    /// `ksql.timestamp.throw.on.invalid`) instead of going to the processing log.
    pub fail_on_bad_timestamp: bool,
    /// The topic's keys carry window bounds.
    window: Option<SourceWindow>,
    /// The values are whole rows of `schema` in [`Format::Rows`] (an internal topic such as a
    /// repartition topic), read back as they were written: no pseudo-columns are added.
    rows: bool,
    schema: SchemaRef,
}

/// The event time of a source's records, one record at a time: for a join that reads its
/// inputs in event-time order and needs the time of the next record of each (`turns.rs`).
/// A record's own timestamp, or its `TIMESTAMP` column's value; `None` for a record that has
/// no valid one (the query reports it when it reads it).
#[derive(Clone)]
pub struct EventClock {
    topic: Arc<Topic>,
    key: Codec,
    value: Codec,
    event_time: EventTime,
    window: Option<SourceWindow>,
}

impl EventClock {
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// The event time of `record`.
    pub fn time_of(&self, record: &StoredRecord) -> Option<i64> {
        let EventTime::Column { index, format } = &self.event_time else {
            return Some(record.record.timestamp);
        };
        let mut key = record.record.key.as_deref();
        if let (Some(w), Some(k)) = (self.window, key) {
            key = Some(w.split(k)?.0);
        }
        let cell = match index.checked_sub(self.key.fields.len()) {
            None => self.key.decode(key).ok()?.swap_remove(*index),
            Some(i) => self
                .value
                .decode(record.record.value.as_deref())
                .ok()?
                .swap_remove(i),
        };
        match (cell, format) {
            (ScalarValue::Utf8(Some(text)), Some(f)) => f.parse_millis(&text).ok(),
            (ScalarValue::Int64(t) | ScalarValue::TimestampMillisecond(t, _), _) => t,
            _ => None,
        }
    }

    /// The event time of the record at `position` of partition `p`, if there is one (and it
    /// has a valid time).
    pub fn head(&self, p: u32, position: u64) -> Result<Option<i64>> {
        let one = eddy_log::ReadLimits {
            max_records: 1,
            max_bytes: 1 << 20,
        };
        Ok(match self.topic.partition(p)?.read(position, one) {
            Ok(records) => records.first().and_then(|r| self.time_of(r)),
            Err(_) => None,
        })
    }
}

/// How a windowed source's keys carry their window, as [`crate::sink::WindowedKey`] writes it.
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
            fail_on_bad_timestamp: false,
            window: None,
            rows: false,
            schema,
        }
    }

    /// What tells the event time of this source's records without decoding whole batches.
    pub fn clock(&self) -> EventClock {
        EventClock {
            topic: self.topic.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            event_time: self.event_time.clone(),
            window: self.window,
        }
    }

    /// Reads an internal topic whose values are whole rows of `schema` (written by a
    /// [`crate::Sink`] whose value codec is [`Format::Rows`] over all its columns).
    pub fn rows(topic: Arc<Topic>, schema: SchemaRef) -> Result<Source> {
        let fields = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        Ok(Source {
            topic,
            key: Codec::new(Format::None, Vec::new(), false)?,
            value: Codec::new(Format::Rows, fields, false)?,
            header_columns: Vec::new(),
            event_time: EventTime::RecordTimestamp,
            drop_null_keys: false,
            fail_on_bad_timestamp: false,
            window: None,
            rows: true,
            schema,
        })
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
        if self.rows {
            return self.decode_rows(partition, records, query, plog);
        }
        if let Some(batch) = self.decode_batch(partition, records)? {
            return Ok(batch);
        }
        self.decode_each(partition, records, query, plog)
    }

    /// The common case a batch at a time: every record has a value, its own timestamp as
    /// event time and no window, and the value format reads whole batches
    /// ([`crate::format::json_batch`]). `None` when the records must be read one by one.
    fn decode_batch(
        &self,
        partition: u32,
        records: &[StoredRecord],
    ) -> Result<Option<RecordBatch>> {
        if self.window.is_some()
            || !matches!(self.event_time, EventTime::RecordTimestamp)
            || records.iter().any(|r| {
                r.record.value.is_none()
                    || r.record.timestamp < 0
                    || (self.drop_null_keys && r.record.key.is_none())
            })
        {
            return Ok(None);
        }
        let values: Vec<&[u8]> = records
            .iter()
            .filter_map(|r| r.record.value.as_deref())
            .collect();
        let Some(value_columns) = crate::format::json_batch::decode_batch(&self.value, &values)
        else {
            return Ok(None);
        };
        let key_columns = match self
            .key
            .decode_columns(records.iter().map(|r| r.record.key.as_deref()))
        {
            Some(columns) => columns,
            None => {
                let mut cells: Vec<Vec<ScalarValue>> = (0..self.key.fields.len())
                    .map(|_| Vec::with_capacity(records.len()))
                    .collect();
                if !cells.is_empty() {
                    for r in records {
                        let Ok(k) = self.key.decode(r.record.key.as_deref()) else {
                            return Ok(None);
                        };
                        for (col, cell) in cells.iter_mut().zip(k) {
                            col.push(cell);
                        }
                    }
                }
                cells
                    .into_iter()
                    .map(ScalarValue::iter_to_array)
                    .collect::<Result<_, _>>()?
            }
        };
        let n = records.len();
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| r.record.timestamp),
            )),
            Arc::new(Int32Array::from(vec![partition as i32; n])),
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| r.offset as i64),
            )),
        ];
        arrays.extend(key_columns);
        arrays.extend(value_columns);
        let headers: Vec<&[Header]> = records
            .iter()
            .map(|r| r.record.headers.as_slice())
            .collect();
        for h in &self.header_columns {
            arrays.push(header_column(h, &headers));
        }
        arrays.push(Arc::new(BooleanArray::from(vec![false; n])));
        arrays.push(headers_array(&headers));
        Ok(Some(RecordBatch::try_new(self.schema.clone(), arrays)?))
    }

    /// Whole rows, as [`Source::rows`] reads them.
    fn decode_rows(
        &self,
        partition: u32,
        records: &[StoredRecord],
        query: &str,
        plog: &ProcessingLog,
    ) -> Result<RecordBatch> {
        let values = records.iter().map(|r| r.record.value.as_deref());
        if let Some(arrays) = self.value.decode_columns(values) {
            return Ok(RecordBatch::try_new(self.schema.clone(), arrays)?);
        }
        let mut columns: Vec<Vec<ScalarValue>> = (0..self.schema.fields().len())
            .map(|_| Vec::with_capacity(records.len()))
            .collect();
        for r in records {
            match self.value.decode(r.record.value.as_deref()) {
                Ok(row) => {
                    for (column, cell) in columns.iter_mut().zip(row) {
                        column.push(cell);
                    }
                }
                Err(e) => {
                    let origin = RecordOrigin {
                        topic: self.topic.name().to_string(),
                        partition,
                        offset: r.offset,
                    };
                    let message = format!("cannot deserialize the row: {e}");
                    plog.report(query, Some(&origin), &message)?;
                }
            }
        }
        let arrays = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(cells, field)| match cells.is_empty() {
                true => Ok(new_empty_array(field.data_type())),
                false => ScalarValue::iter_to_array(cells),
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    /// Record by record, with ksqlDB's full rules; records that do not decode go to the
    /// processing log.
    fn decode_each(
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
                            Err(e) if self.fail_on_bad_timestamp => {
                                return Err(EngineError::Plan(format!(
                                    "invalid timestamp at offset {} of {}: {e}",
                                    r.offset,
                                    self.topic.name()
                                )))
                            }
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
                if self.fail_on_bad_timestamp {
                    return Err(EngineError::Plan(format!(
                        "no valid timestamp at offset {} of {}",
                        r.offset,
                        self.topic.name()
                    )));
                }
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
            arrays.push(header_column(h, &headers));
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

/// A header column's values, one per row.
fn header_column(h: &HeaderColumn, headers: &[&[Header]]) -> ArrayRef {
    match &h.name {
        None => headers_array(headers),
        Some(name) => {
            let mut b = BinaryBuilder::new();
            for hs in headers {
                b.append_option(
                    hs.iter()
                        .rev()
                        .find(|x| &x.name == name)
                        .and_then(|x| x.value.as_deref()),
                );
            }
            Arc::new(b.finish())
        }
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
