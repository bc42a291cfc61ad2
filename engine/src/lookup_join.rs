//! Stream-table joins: each stream row looks its join key up in the join's own copy of the
//! table ([`TableRows`], which the table side's [`crate::table_rows::TableSide`] keeps in the
//! same pipeline) and is joined with the row it finds.
//!
//! Time and order: a stream row joins the table as the join has read it when the row is
//! processed, in input order; table updates never emit anything by themselves (ksqlDB's
//! semantics). The pipeline reads a table input to its end before each read of the stream
//! (see `pipeline/seed.rs`), so a stream record meets every table row appended before it was
//! read, whichever task or thread appended them, and whatever their timestamps: there is no
//! other pipeline's progress to race, as there was when joins read the table's
//! materialization. The copy is read from the table's start, whatever `auto.offset.reset`
//! says.
//!
//! The output is laid out as a source batch of the join's combined columns (see
//! [`crate::schema`]): the stream row's pseudo-columns, then each combined column taken from
//! the stream row or the table row, then the stream row's `__NULL_VALUE` and `__HEADERS`. An
//! inner join drops the rows with no match; a left join fills the table's columns with nulls.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::PSEUDO_COLUMNS;
use crate::state_codec::{decode_row, encode_at};
use crate::table_rows::TableRows;

/// Where a column of the join's output comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinColumn {
    /// A column of the stream's batch, by index.
    Stream(usize),
    /// The table's key (a single-column primary key).
    TableKey,
    /// A value column of the table, by its position among them.
    TableValue(usize),
    /// The table row's time.
    TableRowtime,
}

pub struct StreamTableJoin {
    /// The stream row's join key, over the stream's batch.
    key: Arc<dyn PhysicalExpr>,
    key_type: DataType,
    /// The join's copy of the table.
    table: TableRows,
    inner: bool,
    columns: Vec<JoinColumn>,
    /// The stream batch's `__NULL_VALUE` and `__HEADERS`.
    null_value: usize,
    headers: usize,
    schema: SchemaRef,
}

impl StreamTableJoin {
    /// `schema` is the output's (a source layout of `columns`); `table` the join's copy of the
    /// table, whose key is of `key_type`.
    pub fn new(
        key: Arc<dyn PhysicalExpr>,
        key_type: DataType,
        table: TableRows,
        inner: bool,
        columns: Vec<JoinColumn>,
        stream_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<StreamTableJoin> {
        Ok(StreamTableJoin {
            key,
            key_type,
            table,
            inner,
            columns,
            null_value: stream_schema.index_of(crate::schema::NULL_VALUE)?,
            headers: stream_schema.index_of(crate::schema::HEADERS)?,
            schema,
        })
    }
}

/// The types a materialized row is stored with: its timestamp, then `value_types`.
pub fn row_types(value_types: &[DataType]) -> Vec<DataType> {
    let mut types = vec![DataType::Int64];
    types.extend(value_types.iter().cloned());
    types
}

/// A materialized row's timestamp and values, from its stored bytes (in the store `table`).
pub(crate) fn decode_stored_row(
    table: &str,
    row_types: &[DataType],
    bytes: &[u8],
) -> Result<(i64, Vec<ScalarValue>)> {
    let corrupt = |e: String| {
        EngineError::State(eddy_state::StateError::Corrupt {
            store: table.to_string(),
            message: e,
        })
    };
    let mut row = decode_row(row_types, bytes).map_err(corrupt)?;
    let values = row.split_off(1);
    match row[0] {
        ScalarValue::Int64(Some(rowtime)) => Ok((rowtime, values)),
        _ => Err(corrupt("a row without its timestamp".into())),
    }
}

/// Columns of looked-up rows, one value per output row, built up row by row: the other
/// side's key and value columns, null where there was no row.
pub(crate) struct LookedUp {
    key_type: DataType,
    value_types: Vec<DataType>,
    keys: Vec<ScalarValue>,
    values: Vec<Vec<ScalarValue>>,
}

impl LookedUp {
    pub(crate) fn new(key_type: &DataType, value_types: &[DataType], rows: usize) -> LookedUp {
        LookedUp {
            key_type: key_type.clone(),
            value_types: value_types.to_vec(),
            keys: Vec::with_capacity(rows),
            values: vec![Vec::with_capacity(rows); value_types.len()],
        }
    }

    pub(crate) fn push(&mut self, key: ScalarValue, values: Vec<ScalarValue>) {
        self.keys.push(key);
        for (column, v) in self.values.iter_mut().zip(values) {
            column.push(v);
        }
    }

    pub(crate) fn push_missing(&mut self) -> Result<()> {
        self.keys.push(ScalarValue::try_from(&self.key_type)?);
        for (column, t) in self.values.iter_mut().zip(&self.value_types) {
            column.push(ScalarValue::try_from(t)?);
        }
        Ok(())
    }

    /// The key column and the value columns.
    pub(crate) fn finish(self) -> Result<(ArrayRef, Vec<ArrayRef>)> {
        let array =
            |values: Vec<ScalarValue>, t: &DataType| crate::schema::scalar_column(values, t);
        let key = array(self.keys, &self.key_type)?;
        let values = self
            .values
            .into_iter()
            .zip(&self.value_types)
            .map(|(v, t)| array(v, t))
            .collect::<Result<Vec<_>>>()?;
        Ok((key, values))
    }
}

impl Operator for StreamTableJoin {
    fn describe(&self) -> String {
        format!(
            "{} join with table rows {} on {}",
            if self.inner { "Inner" } else { "Left" },
            self.table.lock().name(),
            self.key
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let keys = self.key.evaluate(&batch)?.into_array(n)?;
        let keys = cast(&keys, &self.key_type)?;
        let null_values = batch.column(self.null_value).as_boolean();
        // A stream record without a value takes no part in a join (Kafka Streams drops it),
        // and a null key finds nothing: the others' keys are looked up together, in key
        // order (which RocksDB would otherwise sort them into).
        let mut asked: Vec<(Vec<u8>, usize)> = Vec::with_capacity(n);
        for row in 0..n {
            if !null_values.value(row) && keys.is_valid(row) {
                let mut encoded = Vec::with_capacity(16);
                encode_at(&keys, row, &mut encoded).map_err(EngineError::Plan)?;
                asked.push((encoded, row));
            }
        }
        asked.sort_unstable();
        let encoded: Vec<&[u8]> = asked.iter().map(|(k, _)| k.as_slice()).collect();
        // The table's columns come back in key order: each batch row takes its key's cell.
        let (looked_up, found_asked) = self.table.lock().get_columns(&encoded)?;
        let mut at = vec![None; n];
        let mut found = vec![false; n];
        for (i, (_, row)) in asked.iter().enumerate() {
            at[*row] = Some(i as u32);
            found[*row] = found_asked[i];
        }
        let at = UInt32Array::from(at);
        let mut looked_up = looked_up
            .iter()
            .map(|column| take(column, &at, None))
            .collect::<Result<Vec<_>, _>>()?;
        let table_values = looked_up.split_off(1);
        let table_times = looked_up.pop().expect("the rows' timestamps");
        // The table's key where a row was found: the stream's key, which it equals.
        let missing: BooleanArray = found.iter().map(|f| Some(!f)).collect();
        let table_key = datafusion::arrow::compute::nullif(&keys, &missing)?;
        let mut columns: Vec<ArrayRef> = (0..PSEUDO_COLUMNS)
            .map(|i| batch.column(i).clone())
            .collect();
        for c in &self.columns {
            columns.push(match c {
                JoinColumn::Stream(i) => batch.column(*i).clone(),
                JoinColumn::TableKey => table_key.clone(),
                JoinColumn::TableValue(i) => table_values[*i].clone(),
                JoinColumn::TableRowtime => table_times.clone(),
            });
        }
        columns.push(batch.column(self.null_value).clone());
        columns.push(batch.column(self.headers).clone());
        // Arrow checks nullability: the output's fields are all nullable but the pseudo ones.
        let out = RecordBatch::try_new(self.schema.clone(), columns)?;
        let keep: BooleanArray = if self.inner {
            BooleanArray::from(found)
        } else {
            null_values.iter().map(|v| Some(v != Some(true))).collect()
        };
        if keep.false_count() > 0 {
            return Ok(filter_record_batch(&out, &keep)?);
        }
        Ok(out)
    }
}
