//! HAVING: a filter over an aggregate's changelog that remembers which groups it let through.
//!
//! An aggregate's result is a table, so a group that stops satisfying HAVING must be deleted
//! downstream (a tombstone), but a group that never satisfied it has nothing to delete and
//! emits nothing. This is Kafka Streams' table filter with old values: a change whose old and new
//! results both fail the predicate is not forwarded. Instead of the old result, the filter keeps
//! the set of groups whose last forwarded row was a value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use eddy_state::Commit;

use super::group_state::GroupState;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::state_codec::encode_row;

pub struct HavingFilter {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
    /// The columns that identify a group (its key, and window bounds if windowed).
    key_columns: Vec<usize>,
    null_value: usize,
    passing: GroupState<()>,
}

impl HavingFilter {
    pub fn new(
        predicate: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
        key_columns: Vec<usize>,
        passing: GroupState<()>,
    ) -> Result<HavingFilter> {
        let null_value = schema.index_of(crate::schema::NULL_VALUE)?;
        Ok(HavingFilter {
            predicate,
            schema,
            key_columns,
            null_value,
            passing,
        })
    }
}

impl Operator for HavingFilter {
    fn describe(&self) -> String {
        format!("Having: {}", self.predicate)
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let mask = self
            .predicate
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let mask = mask.as_boolean();
        let tombstones = batch.column(self.null_value).as_boolean().clone();
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut deleted = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = self
                .key_columns
                .iter()
                .map(|&i| ScalarValue::try_from_array(batch.column(i), row))
                .collect::<Result<Vec<_>, _>>()?;
            let key = encode_row(&key).map_err(EngineError::Plan)?;
            let passes = !tombstones.value(row) && mask.is_valid(row) && mask.value(row);
            let was_passing = self.passing.take(&key, |_| Ok(()))?.is_some();
            if passes {
                self.passing.put(key, ());
                keep.push(true);
                deleted.push(false);
            } else {
                if was_passing {
                    self.passing.delete(key);
                }
                keep.push(was_passing);
                deleted.push(true);
            }
        }
        let mut columns = batch.columns().to_vec();
        columns[self.null_value] = Arc::new(BooleanArray::from(deleted));
        let marked = RecordBatch::try_new(batch.schema(), columns)?;
        Ok(filter_record_batch(&marked, &BooleanArray::from(keep))?)
    }

    fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.passing.checkpoint(commit, 0, |_| Ok(Vec::new()))
    }

    fn wants_commit(&self) -> bool {
        self.passing.is_full()
    }
}
