//! A sink: how a query's output batches become records of a topic, each in the partition its
//! key chooses, with a window's bounds appended to a windowed key.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, ListArray, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use eddy_log::{Header, Record, Topic};

use crate::error::{EngineError, Result};
use crate::format::Codec;
use crate::processing_log::ProcessingLog;
use crate::time_format::TimestampFormat;

/// A list-of-headers column, taken apart once per batch so that a row's headers cost nothing
/// when it has none (the common case) and no array slicing when it has some.
struct HeaderColumn<'a> {
    list: &'a ListArray,
    names: &'a StringArray,
    values: &'a BinaryArray,
}

impl<'a> HeaderColumn<'a> {
    fn new(col: &'a ArrayRef) -> Option<HeaderColumn<'a>> {
        let list = col.as_list_opt::<i32>()?;
        let entries = list.values().as_struct_opt()?;
        Some(HeaderColumn {
            list,
            names: entries.column(0).as_string_opt::<i32>()?,
            values: entries.column(1).as_binary_opt::<i32>()?,
        })
    }

    /// The headers in row `row`.
    fn at(&self, row: usize) -> Vec<Header> {
        if self.list.is_null(row) {
            return Vec::new();
        }
        let offsets = self.list.value_offsets();
        (offsets[row] as usize..offsets[row + 1] as usize)
            .map(|i| Header {
                name: self.names.value(i).to_string(),
                value: (!self.values.is_null(i))
                    .then(|| Bytes::copy_from_slice(self.values.value(i))),
            })
            .collect()
    }
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
    /// Encodes each row and appends them, each to the partition its key chooses, returning
    /// once they are readable and acknowledged. Rows that do not encode go to the processing
    /// log. For an at-least-once query; an exactly-once one encodes with [`Sink::encode`] and
    /// appends in its commit's transactions.
    pub fn write(&self, batch: &RecordBatch, query: &str, plog: &ProcessingLog) -> Result<()> {
        for (p, records) in self.encode(batch, query, plog)? {
            self.topic.partition(p)?.append(&records)?;
        }
        Ok(())
    }

    /// [`Sink::write`], returning before the records are acknowledged: for a caller that waits
    /// once for many appends (`eddy_log::Partition::wait_durable_blocking`). Returns each
    /// partition appended to with its end after the append.
    pub fn write_unacknowledged(
        &self,
        batch: &RecordBatch,
        query: &str,
        plog: &ProcessingLog,
    ) -> Result<Vec<(u32, u64)>> {
        let mut ends = Vec::new();
        for (p, records) in self.encode(batch, query, plog)? {
            let info = self.topic.partition(p)?.append_unacknowledged(&records)?;
            ends.push((p, info.next_offset()));
        }
        Ok(ends)
    }

    /// Encodes each row into a record of the partition its key chooses, by partition. Rows
    /// that do not encode go to the processing log.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        query: &str,
        plog: &ProcessingLog,
    ) -> Result<BTreeMap<u32, Vec<Record>>> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let ts_col = batch.column(self.timestamp_column);
        let null_value = self
            .null_value_column
            .map(|i| batch.column(i).as_boolean().clone());
        // Values a batch at a time where the format can (see format::json_batch).
        let value_columns: Vec<&ArrayRef> = self
            .value_columns
            .iter()
            .map(|&i| batch.column(i))
            .collect();
        let mut encoded_values =
            crate::format::json_batch::encode_batch(&self.value, &value_columns)
                .or_else(|| crate::format::rows::encode_batch(&self.value, &value_columns));
        let key_columns: Vec<&ArrayRef> =
            self.key_columns.iter().map(|&i| batch.column(i)).collect();
        let mut encoded_keys = self.key.encode_columns(&key_columns);
        // Rows spread evenly over the partitions, most often: each list is allocated once.
        let per_partition = batch.num_rows() / self.topic.partitions().len().max(1) + 1;
        let headers = self
            .headers_column
            .and_then(|i| HeaderColumn::new(batch.column(i)));
        for row in 0..batch.num_rows() {
            let cell = |i: &usize| ScalarValue::try_from_array(batch.column(*i), row);
            let keys = match encoded_keys {
                Some(_) => Vec::new(),
                None => self
                    .key_columns
                    .iter()
                    .map(cell)
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let values = match encoded_values {
                Some(_) => Vec::new(),
                None => self
                    .value_columns
                    .iter()
                    .map(cell)
                    .collect::<Result<Vec<_>, _>>()?,
            };
            // A key whose columns are all null is a null key, whatever the format (keys
            // written a batch at a time are one column, whose null is already no key).
            let key_is_null = encoded_keys.is_none()
                && self.null_key_if_all_null
                && keys.iter().all(ScalarValue::is_null);
            let key = match &mut encoded_keys {
                Some(all) => Ok(std::mem::take(&mut all[row])),
                None => self.key.encode(&keys),
            };
            let encoded = key
                .map(|k| if key_is_null { None } else { k })
                .map_err(|e| format!("cannot serialize the key: {e}"))
                .and_then(|k| {
                    let v = match &mut encoded_values {
                        Some(all) => Some(std::mem::take(&mut all[row])),
                        None => self
                            .value
                            .encode(&values)
                            .map_err(|e| format!("cannot serialize the value: {e}"))?,
                    };
                    Ok((k, v))
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
            let headers = headers.as_ref().map(|h| h.at(row)).unwrap_or_default();
            by_partition
                .entry(partition)
                .or_insert_with(|| Vec::with_capacity(per_partition))
                .push(Record {
                    key,
                    value,
                    timestamp,
                    headers,
                });
        }
        Ok(by_partition)
    }

    /// Appends one row given as values for the key and value columns (INSERT INTO ... VALUES).
    /// One row of values as the record it is written as, and the partition its key picks.
    pub fn encode_values(
        &self,
        keys: &[ScalarValue],
        values: &[ScalarValue],
        timestamp: i64,
    ) -> Result<(u32, Record)> {
        let key = self
            .key
            .encode(keys)
            .map_err(|e| EngineError::Plan(format!("cannot serialize the key: {e}")))?;
        let value = self
            .value
            .encode(values)
            .map_err(|e| EngineError::Plan(format!("cannot serialize the value: {e}")))?;
        let p = self.topic.partition_for(key.as_deref());
        let record = Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        };
        Ok((p, record))
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
