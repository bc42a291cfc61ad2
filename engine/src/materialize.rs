//! Materialized tables: the latest row of every key of a table, in a state store, for pull
//! queries.
//!
//! A [`Materialize`] operator ends a pipeline that reads a table's topic (its changelog): each
//! record upserts its key's row, a tombstone deletes it. Rows are kept encoded by
//! [`crate::state_codec`]: the key is the key columns (then, for a windowed table, the window's
//! start and end); the value is the row's timestamp then its value columns. [`read_rows`] reads
//! them back, as of the last commit.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::ScalarValue;
use eddy_state::{Commit, StateScope};

use crate::aggregate::GroupState;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::{NULL_VALUE, ROWTIME, WINDOWEND, WINDOWSTART};
use crate::state_codec::{decode_row, encode_row};

pub struct Materialize {
    schema: SchemaRef,
    key_columns: Vec<usize>,
    value_columns: Vec<usize>,
    rowtime: usize,
    null_value: usize,
    window: Option<(usize, usize)>,
    rows: GroupState<Vec<u8>>,
}

impl Materialize {
    /// Keeps the rows of batches of `schema` (a table source's): keys are its columns
    /// `key_columns`, values `value_columns`.
    pub fn new(
        schema: SchemaRef,
        key_columns: Vec<usize>,
        value_columns: Vec<usize>,
        rows: GroupState<Vec<u8>>,
    ) -> Result<Materialize> {
        let window = match (schema.index_of(WINDOWSTART), schema.index_of(WINDOWEND)) {
            (Ok(s), Ok(e)) => Some((s, e)),
            _ => None,
        };
        Ok(Materialize {
            rowtime: schema.index_of(ROWTIME)?,
            null_value: schema.index_of(NULL_VALUE)?,
            schema,
            key_columns,
            value_columns,
            window,
            rows,
        })
    }
}

impl Operator for Materialize {
    fn describe(&self) -> String {
        format!("Materialize: {} key columns", self.key_columns.len())
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let rowtime = batch.column(self.rowtime).as_primitive::<Int64Type>();
        let tombstone = batch.column(self.null_value).as_boolean();
        for row in 0..batch.num_rows() {
            let cell = |i: &usize| ScalarValue::try_from_array(batch.column(*i), row);
            let mut key = self
                .key_columns
                .iter()
                .map(cell)
                .collect::<Result<Vec<_>, _>>()?;
            if let Some((s, e)) = &self.window {
                key.push(cell(s)?);
                key.push(cell(e)?);
            }
            let key = encode_row(&key).map_err(EngineError::Plan)?;
            if tombstone.value(row) {
                self.rows.delete(key);
                continue;
            }
            let mut value = vec![ScalarValue::Int64(Some(rowtime.value(row)))];
            for i in &self.value_columns {
                value.push(cell(i)?);
            }
            self.rows
                .put(key, encode_row(&value).map_err(EngineError::Plan)?);
        }
        Ok(batch.slice(0, 0))
    }

    fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.rows.checkpoint(commit, 0, |v| Ok(v.clone()))
    }

    fn wants_commit(&self) -> bool {
        self.rows.is_full()
    }
}

/// A materialized row: its key values (with the window's start and end appended for a
/// windowed table), its timestamp and its value columns.
pub struct MaterializedRow {
    pub key: Vec<ScalarValue>,
    pub rowtime: i64,
    pub values: Vec<ScalarValue>,
}

/// The rows of the table materialized in store `name` of `scope` (one task's), in key-byte
/// order. `key_types` include the two BIGINT window bounds for a windowed table.
pub fn read_rows(
    scope: &StateScope,
    name: &str,
    key_types: &[DataType],
    value_types: &[DataType],
) -> Result<Vec<MaterializedRow>> {
    let value_row_types = crate::lookup_join::row_types(value_types);
    let store = scope.db().store(&scope.store_name(name))?;
    let corrupt = |e: String| {
        EngineError::State(eddy_state::StateError::Corrupt {
            store: store.name().to_string(),
            message: e,
        })
    };
    let mut out = Vec::new();
    for (k, v) in store.scan_prefix(&[])? {
        let key = decode_row(key_types, &k).map_err(corrupt)?;
        let mut value = decode_row(&value_row_types, &v).map_err(corrupt)?;
        let values = value.split_off(1);
        let ScalarValue::Int64(Some(rowtime)) = value[0] else {
            return Err(corrupt("a row without its timestamp".into()));
        };
        out.push(MaterializedRow {
            key,
            rowtime,
            values,
        });
    }
    Ok(out)
}
