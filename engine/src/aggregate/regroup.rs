//! The first stage of a table's aggregation when its rows are repartitioned by their groups.
//!
//! An aggregation over a table takes a key's previous row back out of its group when the key
//! gets a new row or is deleted. In one pipeline the [`Aggregate`](super::Aggregate) keeps
//! each key's row to do so; but once the rows go through a repartition topic keyed by their
//! groups (as ksqlDB always does for a table's `GROUP BY`), a key's old and new rows may land
//! in different partitions, and the stage after the topic cannot know the old one. So the
//! stage before it does, as Kafka Streams' `KTable.groupBy` does: [`Regroup`] keeps each
//! key's last row (its group and arguments) and turns every change into what it does to the
//! groups: the new row's arguments added to its group, the old row's taken back out of its
//! group, or both in one record when the group stays the same (so that the result is emitted
//! once, as Kafka Streams does since KIP-904). The aggregate after the topic reads these with
//! [`ChangeColumns`].

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use eddy_state::Commit;

use super::group::PrevRow;
use super::group_state::GroupState;
use super::udaf::AggCall;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::scalar_column;
use crate::state_codec::{decode_row, encode_row};

/// Where the aggregate after a [`Regroup`] finds a change's parts: the calls' own argument
/// columns hold the arguments to add, `old_args` (one per call) those to take back.
#[derive(Clone, Debug)]
pub struct ChangeColumns {
    pub old_args: Vec<usize>,
    /// Whether the row takes old arguments back out of its group.
    pub retract: usize,
    /// Whether the row adds its arguments to its group.
    pub add: usize,
}

/// How a table change touches the groups.
enum Change {
    /// A new row in the group the key's old row was in: both in one record.
    Both(PrevRow),
    Retract(PrevRow),
    Add,
}

pub struct Regroup {
    /// The pre-projected row's grouping columns are its first `groups`.
    groups: usize,
    /// The columns of the table row's key.
    key_columns: Vec<usize>,
    calls: Vec<AggCall>,
    null_value: usize,
    /// Each key's last row: its group and its arguments.
    rows: GroupState<PrevRow>,
    row_types: Vec<DataType>,
    schema: SchemaRef,
}

impl Regroup {
    /// Over batches of `input` (pre-projected: `groups` grouping columns first), whose table
    /// key is `key_columns`, for the aggregate `calls`; `rows` keeps each key's last row.
    pub fn new(
        input: &SchemaRef,
        groups: usize,
        key_columns: Vec<usize>,
        calls: Vec<AggCall>,
        null_value: usize,
        rows: GroupState<PrevRow>,
    ) -> Regroup {
        let mut row_types: Vec<DataType> = (0..groups)
            .map(|i| input.field(i).data_type().clone())
            .collect();
        row_types.extend(calls.iter().map(|c| c.arg_type.clone()));
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("__OLD{i}"), c.arg_type.clone(), true)),
        );
        fields.push(Field::new("__RETRACT", DataType::Boolean, false));
        fields.push(Field::new("__ADD", DataType::Boolean, false));
        Regroup {
            groups,
            key_columns,
            calls,
            null_value,
            rows,
            row_types,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// Where the aggregate after this stage finds each change's parts.
    pub fn change_columns(&self) -> ChangeColumns {
        let n = self.schema.fields().len();
        ChangeColumns {
            old_args: (n - 2 - self.calls.len()..n - 2).collect(),
            retract: n - 2,
            add: n - 1,
        }
    }

    /// What the change in `batch`'s row `row` does to the groups; updates the key's last row.
    fn change(&mut self, batch: &RecordBatch, row: usize) -> Result<Vec<Change>> {
        let cell = |i: usize| ScalarValue::try_from_array(batch.column(i), row);
        let key = self
            .key_columns
            .iter()
            .map(|&i| cell(i))
            .collect::<Result<Vec<_>, _>>()?;
        let key = encode_row(&key).map_err(EngineError::Plan)?;
        let (types, groups) = (&self.row_types, self.groups);
        let prev = self.rows.take(&key, |b| {
            let mut group = decode_row(types, b)?;
            let args = group.split_off(groups);
            Ok(PrevRow { group, args })
        })?;
        let has_group = (0..groups).all(|i| batch.column(i).is_valid(row));
        let new = match !batch.column(self.null_value).as_boolean().value(row) && has_group {
            true => Some(PrevRow {
                group: (0..groups).map(cell).collect::<Result<_, _>>()?,
                args: self
                    .calls
                    .iter()
                    .map(|c| cell(c.arg))
                    .collect::<Result<_, _>>()?,
            }),
            false => None,
        };
        let changes = match (prev, &new) {
            (Some(p), Some(n)) if p.group == n.group => vec![Change::Both(p)],
            (Some(p), Some(_)) => vec![Change::Retract(p), Change::Add],
            (Some(p), None) => vec![Change::Retract(p)],
            (None, Some(_)) => vec![Change::Add],
            (None, None) => Vec::new(),
        };
        match new {
            Some(n) => self.rows.put(key, n),
            None => self.rows.delete(key),
        }
        Ok(changes)
    }
}

impl Operator for Regroup {
    fn describe(&self) -> String {
        format!(
            "Regroup: a table's changes as additions to and retractions from {} grouping columns",
            self.groups
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let mut rows = Vec::with_capacity(batch.num_rows());
        let mut changes = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for change in self.change(&batch, row)? {
                rows.push(row as u32);
                changes.push(change);
            }
        }
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, column) in batch.columns().iter().enumerate() {
            if i >= self.groups {
                columns.push(take(column, &indices, None)?);
                continue;
            }
            // A retraction belongs to the old row's group, not the new row's.
            let values = changes
                .iter()
                .zip(indices.values())
                .map(|(c, &row)| match c {
                    Change::Retract(p) => Ok(p.group[i].clone()),
                    _ => ScalarValue::try_from_array(column, row as usize),
                })
                .collect::<Result<Vec<_>, _>>()?;
            columns.push(scalar_column(values, column.data_type())?);
        }
        for (i, call) in self.calls.iter().enumerate() {
            let null = ScalarValue::try_from(&call.arg_type)?;
            let old = changes.iter().map(|c| match c {
                Change::Both(p) | Change::Retract(p) => p.args[i].clone(),
                Change::Add => null.clone(),
            });
            columns.push(scalar_column(old, &call.arg_type)?);
        }
        let flag = |f: fn(&Change) -> bool| {
            Arc::new(BooleanArray::from_iter(changes.iter().map(|c| Some(f(c)))))
        };
        columns.push(flag(|c| !matches!(c, Change::Add)));
        columns.push(flag(|c| !matches!(c, Change::Retract(_))));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn wants_commit(&self) -> bool {
        self.rows.is_full()
    }

    fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.rows
            .checkpoint(commit, 0, |r| encode_row(r.group.iter().chain(&r.args)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, Int64Array};
    use proptest::prelude::*;

    use super::*;
    use crate::aggregate::udaf::AggFunc;
    use crate::aggregate::{Aggregate, AggregateSpec, AggregateState};
    use crate::processing_log::ProcessingLog;
    use crate::schema::{headers_type, no_headers};

    /// A table's pre-projected rows: group `G`, argument `V`, table key `K`.
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("G", DataType::Int32, true),
            Field::new("V", DataType::Int64, true),
            Field::new("K", DataType::Int32, false),
            Field::new("__ROWTIME", DataType::Int64, false),
            Field::new("__NULL_VALUE", DataType::Boolean, false),
            Field::new("__HEADERS", headers_type(), false),
        ]))
    }

    fn calls() -> Vec<AggCall> {
        let call = |func, arg| AggCall {
            func,
            arg,
            arg_type: DataType::Int64,
            n: None,
            ignore_nulls: true,
            returns_array: false,
        };
        vec![call(AggFunc::Sum, 1), call(AggFunc::CountStar, 1)]
    }

    fn spec(table_key: Option<Vec<usize>>, changes: Option<ChangeColumns>) -> AggregateSpec {
        AggregateSpec {
            group_fields: vec![Field::new("G", DataType::Int32, true)],
            calls: calls(),
            rowtime: 3,
            null_value: 4,
            headers: 5,
            window: None,
            table_key,
            changes,
        }
    }

    /// A change of key `k`: its new row (group, value), or its deletion.
    fn change(k: i32, row: Option<(Option<i32>, i64)>, t: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(vec![row.and_then(|r| r.0)])),
                Arc::new(Int64Array::from(vec![row.map(|r| r.1)])),
                Arc::new(Int32Array::from(vec![k])),
                Arc::new(Int64Array::from(vec![t])),
                Arc::new(BooleanArray::from(vec![row.is_none()])),
                no_headers(1),
            ],
        )
        .unwrap()
    }

    /// Each result row as text: group, SUM, COUNT(*).
    fn results(batch: &RecordBatch) -> Vec<String> {
        (0..batch.num_rows())
            .map(|row| {
                (0..3)
                    .map(|c| ScalarValue::try_from_array(batch.column(c), row).unwrap())
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    proptest! {
        /// Regrouping then applying the changes emits what the aggregate that keeps the
        /// table's rows itself emits, result for result.
        #[test]
        fn regrouped_changes_aggregate_as_the_table_rows_do(
            changes in prop::collection::vec(
                (0..4i32, prop::option::of((prop::option::weighted(0.9, 0..3i32), -5..20i64))),
                0..60,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = eddy_log::Log::open(dir.path(), Default::default()).unwrap();
            let plog = ProcessingLog::new(log);
            let ctx = OperatorContext { query_id: "q", source_topic: "t", processing_log: &plog };
            let mut direct = Aggregate::new(spec(Some(vec![2]), None), AggregateState::in_memory()).unwrap();
            let mut regroup = Regroup::new(&schema(), 1, vec![2], calls(), 4, GroupState::in_memory());
            let columns = regroup.change_columns();
            let mut after = Aggregate::new(spec(None, Some(columns)), AggregateState::in_memory()).unwrap();
            for (t, (k, row)) in changes.into_iter().enumerate() {
                let batch = change(k, row, t as i64);
                let expected = results(&direct.process(batch.clone(), &ctx).unwrap());
                let regrouped = regroup.process(batch, &ctx).unwrap();
                let got = match regrouped.num_rows() {
                    0 => Vec::new(),
                    _ => results(&after.process(regrouped, &ctx).unwrap()),
                };
                prop_assert_eq!(got, expected);
            }
        }
    }
}
