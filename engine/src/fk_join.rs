//! Foreign-key table-table joins: a left table's rows join the right table's row whose primary
//! key equals an expression of the left row (its foreign key). The result is keyed by the left
//! table's primary key: one joined row per left row.
//!
//! Semantics are Kafka Streams' (KIP-213), as ksqlDB runs them:
//!
//! - A left row's change looks the right row up by its foreign key and emits the joined row. An
//!   INNER join emits nothing for a new left row without a match, but a tombstone for a changed
//!   one (it may have joined before); a LEFT join emits the left row padded with nulls. A
//!   deleted left row emits a tombstone.
//! - A right row's change emits, for every left row that refers to it, the joined row with the
//!   new right row; a deleted right row emits tombstones (INNER) or null-padded rows (LEFT).
//! - A joined row's time is the later of the two rows'.
//!
//! The left side keeps an index in a store: `f[fk][left key]` for every left row, and `k[left
//! key]` → its foreign key, so that a right change finds the left rows that refer to it with
//! one prefix scan and a left change knows the foreign key it had. Each side's rows are the
//! join's own ([`TableRows`], as in the primary-key table join): a change meets the other side
//! as of the records the join has read.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::{no_headers, scalar_column, NULL_VALUE, PSEUDO_COLUMNS};
use crate::staged_store::StagedStore;
use crate::state_codec::encode_row;
use crate::table_rows::TableRows;

/// Where a column of the joined row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FkColumn {
    /// A column of the left row's primary key (the result's key), by index.
    LeftKey(usize),
    /// A value column of the left row, by its position among them.
    LeftValue(usize),
    /// The right row's primary key: null when there is none.
    RightKey,
    RightValue(usize),
}

/// What both sides know of the tables.
pub struct FkTables {
    /// The left table's rows, written by the left side's operator, and their types.
    pub left: TableRows,
    pub left_key_types: Vec<DataType>,
    pub left_value_types: Vec<DataType>,
    /// The right table's rows, written by the right side's operator.
    pub right: TableRows,
    pub right_key_type: DataType,
    pub right_value_types: Vec<DataType>,
    /// Left rows by foreign key, kept by the left side's operator.
    pub index: Arc<Mutex<StagedStore>>,
}

/// One side of a foreign-key join. Both sides' batches are table changes: key at the first
/// column after the pseudo-columns, then the value columns, `__NULL_VALUE` set for a deletion.
pub struct ForeignKeyJoin {
    left_side: bool,
    inner: bool,
    /// The left row's foreign key (left side only).
    foreign_key: Option<Arc<dyn PhysicalExpr>>,
    tables: Arc<FkTables>,
    columns: Vec<FkColumn>,
    null_value: usize,
    schema: SchemaRef,
}

/// A row of the output before it becomes part of a batch.
struct Out {
    time: i64,
    left_key: Vec<ScalarValue>,
    /// The left row's values, the right row's key and values; `None` for a tombstone.
    row: Option<(Vec<ScalarValue>, Option<RightRow>)>,
}

/// A right row: its key and its values.
type RightRow = (ScalarValue, Vec<ScalarValue>);

fn index_key(fk: &[u8], left_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + fk.len() + left_key.len());
    k.push(b'f');
    k.extend_from_slice(&(fk.len() as u32).to_be_bytes());
    k.extend_from_slice(fk);
    k.extend_from_slice(left_key);
    k
}

fn fk_of_key(left_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + left_key.len());
    k.push(b'k');
    k.extend_from_slice(left_key);
    k
}

impl ForeignKeyJoin {
    /// The left side's operator: `foreign_key` is over the left table's batches.
    pub fn left(
        inner: bool,
        foreign_key: Arc<dyn PhysicalExpr>,
        tables: Arc<FkTables>,
        columns: Vec<FkColumn>,
        own_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<ForeignKeyJoin> {
        Ok(ForeignKeyJoin {
            left_side: true,
            inner,
            foreign_key: Some(foreign_key),
            tables,
            columns,
            null_value: own_schema.index_of(NULL_VALUE)?,
            schema,
        })
    }

    pub fn right(
        inner: bool,
        tables: Arc<FkTables>,
        columns: Vec<FkColumn>,
        own_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<ForeignKeyJoin> {
        Ok(ForeignKeyJoin {
            left_side: false,
            inner,
            foreign_key: None,
            tables,
            columns,
            null_value: own_schema.index_of(NULL_VALUE)?,
            schema,
        })
    }

    fn left_changes(&self, batch: &RecordBatch, out: &mut Vec<Out>) -> Result<()> {
        let n = batch.num_rows();
        let t = &self.tables;
        let fks = self
            .foreign_key
            .as_ref()
            .expect("the left side has a foreign key")
            .evaluate(batch)?
            .into_array(n)?;
        let fks = cast(&fks, &t.right_key_type)?;
        let times = batch.column(0).as_primitive::<Int64Type>();
        let deleted = batch.column(self.null_value).as_boolean();
        let mut left_rows = t.left.lock();
        let right_rows = t.right.lock();
        let keys = PSEUDO_COLUMNS..PSEUDO_COLUMNS + t.left_key_types.len();
        let values = keys.end..keys.end + t.left_value_types.len();
        let mut index = t.index.lock().expect("join index");
        for row in 0..n {
            let time = times.value(row);
            let key = keys
                .clone()
                .map(|c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let encoded = encode_row(&key).map_err(EngineError::Plan)?;
            let had = index.get(&fk_of_key(&encoded))?;
            if let Some(old) = &had {
                index.delete(index_key(old, &encoded));
            }
            left_rows.apply(
                encoded.clone(),
                batch,
                row,
                values.clone(),
                deleted.value(row),
            )?;
            if deleted.value(row) {
                if had.is_some() {
                    index.delete(fk_of_key(&encoded));
                }
                out.push(Out {
                    time,
                    left_key: key,
                    row: None,
                });
                continue;
            }
            let fk = ScalarValue::try_from_array(&fks, row)?;
            let encoded_fk = encode_row(std::slice::from_ref(&fk)).map_err(EngineError::Plan)?;
            index.put(fk_of_key(&encoded), encoded_fk.clone());
            index.put(index_key(&encoded_fk, &encoded), Vec::new());
            let right = match fk.is_null() {
                true => None,
                false => right_rows.get(&encoded_fk)?,
            };
            let left_values = values
                .clone()
                .map(|c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            match right {
                Some((right_time, right_values)) => out.push(Out {
                    time: time.max(right_time),
                    left_key: key,
                    row: Some((left_values, Some((fk, right_values)))),
                }),
                // A new left row without a match has never joined: nothing to take back.
                None if self.inner && had.is_none() => {}
                None if self.inner => out.push(Out {
                    time,
                    left_key: key,
                    row: None,
                }),
                None => out.push(Out {
                    time,
                    left_key: key,
                    row: Some((left_values, None)),
                }),
            }
        }
        Ok(())
    }

    fn right_changes(&self, batch: &RecordBatch, out: &mut Vec<Out>) -> Result<()> {
        let t = &self.tables;
        let times = batch.column(0).as_primitive::<Int64Type>();
        let deleted = batch.column(self.null_value).as_boolean();
        let index = t.index.lock().expect("join index");
        let left_rows = t.left.lock();
        let mut right_rows = t.right.lock();
        let values = PSEUDO_COLUMNS + 1..PSEUDO_COLUMNS + 1 + t.right_value_types.len();
        for row in 0..batch.num_rows() {
            let time = times.value(row);
            let key = ScalarValue::try_from_array(batch.column(PSEUDO_COLUMNS), row)?;
            let encoded = encode_row(std::slice::from_ref(&key)).map_err(EngineError::Plan)?;
            let right_values = values
                .clone()
                .map(|c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            right_rows.apply(
                encoded.clone(),
                batch,
                row,
                values.clone(),
                deleted.value(row),
            )?;
            let prefix = index_key(&encoded, &[]);
            // Encoded keys start with a presence byte (0 or 1): all sort below 0xff.
            let mut end = prefix.clone();
            end.push(0xff);
            for (k, _) in index.range(&prefix, Some(&end))? {
                let left_encoded = &k[prefix.len()..];
                let Some((left_time, left_values)) = left_rows.get(left_encoded)? else {
                    continue;
                };
                let left_key = crate::state_codec::decode_row(&t.left_key_types, left_encoded)
                    .map_err(|e| EngineError::Plan(format!("a corrupt join index entry: {e}")))?;
                let time = time.max(left_time);
                out.push(match (deleted.value(row), self.inner) {
                    (true, true) => Out {
                        time,
                        left_key,
                        row: None,
                    },
                    (true, false) => Out {
                        time,
                        left_key,
                        row: Some((left_values, None)),
                    },
                    (false, _) => Out {
                        time,
                        left_key,
                        row: Some((left_values, Some((key.clone(), right_values.clone())))),
                    },
                });
            }
        }
        Ok(())
    }

    fn build(&self, rows: Vec<Out>) -> Result<RecordBatch> {
        let n = rows.len();
        // A joined row's partition and offset are no one record's.
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time))),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int64Array::from(vec![0; n])),
        ];
        for (j, c) in self.columns.iter().enumerate() {
            let ty = self.schema.field(PSEUDO_COLUMNS + j).data_type();
            let null = ScalarValue::try_from(ty)?;
            let values = rows.iter().map(|r| match (c, &r.row) {
                (FkColumn::LeftKey(i), _) => r.left_key[*i].clone(),
                (_, None) => null.clone(),
                (FkColumn::LeftValue(i), Some((left, _))) => left[*i].clone(),
                (FkColumn::RightKey, Some((_, Some((k, _))))) => k.clone(),
                (FkColumn::RightValue(i), Some((_, Some((_, v))))) => v[*i].clone(),
                (_, Some((_, None))) => null.clone(),
            });
            columns.push(scalar_column(values, ty)?);
        }
        columns.push(Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.row.is_none())),
        )));
        columns.push(no_headers(n));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl Operator for ForeignKeyJoin {
    fn describe(&self) -> String {
        format!(
            "{} foreign-key join: the {} table's changes",
            if self.inner { "Inner" } else { "Left" },
            if self.left_side { "left" } else { "right" },
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let mut out = Vec::new();
        if self.left_side {
            self.left_changes(&batch, &mut out)?;
        } else {
            self.right_changes(&batch, &mut out)?;
        }
        self.build(out)
    }

    fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        if self.left_side {
            let mut index = self.tables.index.lock().expect("join index");
            index.checkpoint(commit, 0)?;
            self.tables.left.lock().checkpoint(commit)
        } else {
            self.tables.right.lock().checkpoint(commit)
        }
    }

    fn wants_commit(&self) -> bool {
        match self.left_side {
            true => {
                self.tables.index.lock().expect("join index").is_full()
                    || self.tables.left.lock().is_full()
            }
            false => self.tables.right.lock().is_full(),
        }
    }
}
