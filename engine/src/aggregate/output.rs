//! The aggregate's output: the rows one batch produced, and the batch made of them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::operator::Aggregate;
use super::row::GroupVals;
use crate::error::Result;

/// An output row under construction.
pub(super) struct Emit {
    pub(super) group: GroupVals,
    pub(super) results: Vec<ScalarValue>,
    pub(super) window: Option<(i64, i64)>,
    pub(super) ts: i64,
    pub(super) tombstone: bool,
}

impl Aggregate {
    /// The output batch of `rows`, with their `headers` (one row of headers each). Grouping
    /// values of [`GroupVals::Input`] rows are those of `input`'s rows.
    pub(super) fn build(
        &self,
        rows: Vec<Emit>,
        input: Option<&RecordBatch>,
        headers: &ArrayRef,
    ) -> Result<RecordBatch> {
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        // Each row's grouping values: (0, row) of the input, (1, i) of the decoded ones.
        let mut decoded = 0;
        let picks: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| match r.group {
                GroupVals::Input(row) => (0, row),
                GroupVals::Values(_) => {
                    decoded += 1;
                    (1, decoded - 1)
                }
            })
            .collect();
        for (i, f) in self.spec.group_fields.iter().enumerate() {
            let t = f.data_type();
            let values = to_array(
                rows.iter().filter_map(|r| match &r.group {
                    GroupVals::Values(vs) => Some(vs[i].clone()),
                    GroupVals::Input(_) => None,
                }),
                t,
            )?;
            let from_input = match input {
                Some(b) if b.column(i).data_type() == t => b.column(i).clone(),
                Some(b) => datafusion::arrow::compute::cast(b.column(i), t)?,
                None => datafusion::arrow::array::new_empty_array(t),
            };
            columns.push(if decoded == 0 {
                let rows = datafusion::arrow::array::UInt32Array::from_iter_values(
                    picks.iter().map(|&(_, r)| r as u32),
                );
                datafusion::arrow::compute::take(&from_input, &rows, None)?
            } else if decoded == n {
                values
            } else {
                datafusion::arrow::compute::interleave(&[&from_input, &values], &picks)?
            });
        }
        for (i, c) in self.spec.calls.iter().enumerate() {
            let t = c.output_type();
            let null = ScalarValue::try_from(&t)?;
            columns.push(to_array(
                rows.iter()
                    .map(|r| r.results.get(i).cloned().unwrap_or_else(|| null.clone())),
                &t,
            )?);
        }
        columns.push(Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.window.map(|w| w.0)),
        )));
        columns.push(Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.window.map(|w| w.1)),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.ts),
        )));
        columns.push(Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.tombstone).collect::<Vec<_>>(),
        )));
        columns.push(headers.clone());
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

fn to_array(values: impl Iterator<Item = ScalarValue>, t: &DataType) -> Result<ArrayRef> {
    let values: Vec<ScalarValue> = values.collect();
    if values.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(t));
    }
    let array = ScalarValue::iter_to_array(values)?;
    Ok(if array.data_type() == t {
        array
    } else {
        datafusion::arrow::compute::cast(&array, t)?
    })
}
