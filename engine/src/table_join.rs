//! Table-table joins on the primary key: each side's changes look the other side up and emit
//! the joined row's new state.
//!
//! A pipeline with two inputs runs one [`TableTableJoin`] per side. A change to a key on either
//! side emits that key's joined row as it now is: the join of both rows when the join kind keeps
//! it (INNER: both present; LEFT, RIGHT: that side present; FULL: either), or a tombstone when it no longer does
//! but did before the change; a change that neither makes nor unmakes a joined row emits
//! nothing, as Kafka Streams' table joins do. The output's timestamp is the larger of the two
//! rows'.
//!
//! Each side's rows are the join's own ([`TableRows`]): the operator of a side writes its
//! side's changes there as it processes them, so a change meets the other side as of the
//! records the join has read, in the join's input order, and finds its own side's previous
//! row there. The inputs are read from their start (see
//! [`crate::Pipeline::with_table_inputs`]), so the copies hold every row.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::ScalarValue;

use datafusion::arrow::compute::filter_record_batch;

use crate::error::{EngineError, Result};
use crate::lookup_join::LookedUp;
use crate::operator::{Operator, OperatorContext};
use crate::schema::{HEADERS, NULL_VALUE, PSEUDO_COLUMNS};
use crate::state_codec::encode_row;
use crate::table_rows::TableRows;

/// Where a column of the joined row comes from, seen from the side whose change is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideColumn {
    /// The join key (the changed row's key).
    JoinKey,
    /// A column of the changed row's batch, by index.
    Own(usize),
    /// The other side's key: null when it has no row.
    OtherKey,
    /// A value column of the other side's row, by its position among them.
    OtherValue(usize),
}

/// Which joined rows a table-table join keeps, by the sides that have a row for the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Inner,
    Left,
    Right,
    Full,
}

impl Keep {
    fn keeps(self, left: bool, right: bool) -> bool {
        match self {
            Keep::Inner => left && right,
            Keep::Left => left,
            Keep::Right => right,
            Keep::Full => left || right,
        }
    }
}

pub struct TableTableJoin {
    /// Whether this operator processes the left side's changes.
    own_is_left: bool,
    keep: Keep,
    /// The changed row's key column.
    key: usize,
    key_type: DataType,
    other: TableRows,
    other_value_types: Vec<DataType>,
    /// The changed side's rows: written here as its changes are processed.
    own: TableRows,
    /// The changed row's value columns.
    own_values: std::ops::Range<usize>,
    columns: Vec<SideColumn>,
    null_value: usize,
    headers: usize,
    schema: SchemaRef,
}

impl TableTableJoin {
    /// `schema` is the output's (a source layout of `columns`); `own` and `other` this side's
    /// and the other side's rows; the changed rows' values are `own_value_count` columns after
    /// the key.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        own_is_left: bool,
        keep: Keep,
        key: usize,
        key_type: DataType,
        (own, own_value_count): (TableRows, usize),
        (other, other_value_types): (TableRows, Vec<DataType>),
        columns: Vec<SideColumn>,
        own_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<TableTableJoin> {
        Ok(TableTableJoin {
            own_is_left,
            keep,
            key,
            key_type,
            other,
            other_value_types,
            own,
            own_values: key + 1..key + 1 + own_value_count,
            columns,
            null_value: own_schema.index_of(NULL_VALUE)?,
            headers: own_schema.index_of(HEADERS)?,
            schema,
        })
    }
}

impl Operator for TableTableJoin {
    fn describe(&self) -> String {
        format!(
            "{:?} table-table join of the {} side's changes with {}",
            self.keep,
            if self.own_is_left { "left" } else { "right" },
            self.other.lock().name()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let rowtimes = batch.column(0).as_primitive::<Int64Type>();
        let deleted = batch.column(self.null_value).as_boolean();
        let mut out_rowtime = Vec::with_capacity(n);
        let mut tombstone = Vec::with_capacity(n);
        let mut other_rows = LookedUp::new(&self.key_type, &self.other_value_types, n);
        let mut emit = Vec::with_capacity(n);
        let mut own = self.own.lock();
        let other_rows_now = self.other.lock();
        let keeps = |own: bool, other: bool| {
            let (left, right) = if self.own_is_left {
                (own, other)
            } else {
                (other, own)
            };
            self.keep.keeps(left, right)
        };
        for row in 0..n {
            let key = ScalarValue::try_from_array(batch.column(self.key), row)?;
            let encoded = encode_row(std::slice::from_ref(&key)).map_err(EngineError::Plan)?;
            let other = if key.is_null() {
                None
            } else {
                other_rows_now.get(&encoded)?
            };
            let was_present = own.contains(&encoded)?;
            let own_present = !deleted.value(row);
            if !key.is_null() {
                own.apply(encoded, &batch, row, self.own_values.clone(), !own_present)?;
            }
            let keep = keeps(own_present, other.is_some());
            emit.push(keep || keeps(was_present, other.is_some()));
            tombstone.push(!keep);
            let own_time = rowtimes.value(row);
            match other.filter(|_| keep) {
                Some((time, values)) => {
                    out_rowtime.push(own_time.max(time));
                    other_rows.push(key, values);
                }
                None => {
                    out_rowtime.push(own_time);
                    other_rows.push_missing()?;
                }
            }
        }
        drop((own, other_rows_now));
        let (other_key, other_values) = other_rows.finish()?;
        let tombstones = BooleanArray::from(tombstone);
        // A tombstone's values are null: only its key is written.
        let nulled = |a: &ArrayRef| -> Result<ArrayRef> {
            Ok(datafusion::arrow::compute::nullif(a, &tombstones)?)
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(out_rowtime))];
        columns.extend((1..PSEUDO_COLUMNS).map(|i| batch.column(i).clone()));
        for c in &self.columns {
            columns.push(match c {
                SideColumn::JoinKey => batch.column(self.key).clone(),
                // A deleted row's key is no longer its side's (its values are null already).
                SideColumn::Own(i) if *i == self.key => nulled(
                    &datafusion::arrow::compute::nullif(batch.column(*i), deleted)?,
                )?,
                SideColumn::Own(i) => nulled(batch.column(*i))?,
                SideColumn::OtherKey => nulled(&other_key)?,
                SideColumn::OtherValue(i) => nulled(&other_values[*i])?,
            });
        }
        columns.push(Arc::new(tombstones.clone()));
        columns.push(batch.column(self.headers).clone());
        let out = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(filter_record_batch(&out, &BooleanArray::from(emit))?)
    }

    fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        self.own.lock().checkpoint(commit)
    }

    fn wants_commit(&self) -> bool {
        self.own.lock().is_full()
    }
}
