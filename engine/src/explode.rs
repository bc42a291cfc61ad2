//! Table functions: `EXPLODE(array)` turns one row into one row per element.
//!
//! The operator runs after the projection, which computes each exploded array as a column.
//! Each input row becomes as many rows as its longest exploded array has elements (none for
//! null or empty arrays); an exploded column holds the elements, null where its array is
//! shorter, and every other column repeats the row's value, as ksqlDB zips several table
//! functions in one SELECT.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};

pub struct Explode {
    /// The exploded columns (arrays in the input, their elements in the output).
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl Explode {
    /// Explodes the array columns `columns` of batches of schema `input`.
    pub fn new(input: &Schema, columns: Vec<usize>) -> Result<Explode> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for &i in &columns {
            let element = match input.field(i).data_type() {
                DataType::List(item) => item.data_type().clone(),
                other => {
                    return Err(EngineError::Plan(format!(
                        "EXPLODE needs an array, but {} is {other}",
                        input.field(i).name()
                    )))
                }
            };
            fields[i] = Field::new(input.field(i).name(), element, true);
        }
        Ok(Explode {
            columns,
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

impl Operator for Explode {
    fn describe(&self) -> String {
        let names: Vec<&str> = self
            .columns
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .collect();
        format!("Explode: {}", names.join(", "))
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _: &OperatorContext<'_>) -> Result<RecordBatch> {
        let lists = self
            .columns
            .iter()
            .map(|&i| batch.column(i).as_list::<i32>())
            .collect::<Vec<_>>();
        let mut rows: Vec<u32> = Vec::new();
        let mut elements: Vec<Vec<Option<u32>>> = vec![Vec::new(); lists.len()];
        for row in 0..batch.num_rows() {
            let len = |l: &&datafusion::arrow::array::ListArray| {
                if l.is_valid(row) {
                    l.value_length(row) as usize
                } else {
                    0
                }
            };
            let n = lists.iter().map(len).max().unwrap_or(0);
            for i in 0..n {
                rows.push(row as u32);
                for (l, out) in lists.iter().zip(&mut elements) {
                    out.push((i < len(l)).then(|| (l.value_offsets()[row] as usize + i) as u32));
                }
            }
        }
        let rows = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (i, col) in batch.columns().iter().enumerate() {
            let exploded = match self.columns.iter().position(|&c| c == i) {
                Some(k) => {
                    let picks = UInt32Array::from(std::mem::take(&mut elements[k]));
                    take(lists[k].values(), &picks, None)?
                }
                None => take(col, &rows, None)?,
            };
            let want = self.schema.field(i).data_type();
            columns.push(if exploded.data_type() == want {
                exploded
            } else {
                cast(&exploded, want)?
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, ListArray};
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn zips_arrays_and_repeats_other_columns() {
        let a = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![Some(3)]),
        ]);
        let b = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(10)]),
            Some(vec![]),
            Some(vec![Some(30), Some(31)]),
        ]);
        let id = Int32Array::from(vec![7, 8, 9]);
        let schema = Schema::new(vec![
            Field::new("ID", DataType::Int32, true),
            Field::new("A", a.data_type().clone(), true),
            Field::new("B", b.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(id), Arc::new(a), Arc::new(b)],
        )
        .unwrap();
        let mut op = Explode::new(&schema, vec![1, 2]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = eddy_log::Log::open(dir.path(), Default::default()).unwrap();
        let log = crate::processing_log::ProcessingLog::new(log);
        let ctx = OperatorContext {
            query_id: "q",
            source_topic: "t",
            processing_log: &log,
        };
        let out = op.process(batch, &ctx).unwrap();
        let col = |i: usize| -> Vec<Option<i32>> {
            out.column(i).as_primitive::<Int32Type>().iter().collect()
        };
        assert_eq!(col(0), vec![Some(7), Some(7), Some(9), Some(9)]);
        assert_eq!(col(1), vec![Some(1), Some(2), Some(3), None]);
        assert_eq!(col(2), vec![Some(10), None, Some(30), Some(31)]);
    }
}
