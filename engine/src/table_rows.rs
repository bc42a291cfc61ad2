//! A table join's own copy of a table: the latest row of each key, as the join has read it.
//!
//! A table-table join could look each side up in the table's materialization (the store
//! [`crate::materialize`] keeps for pull queries), but that store is another pipeline's: it
//! may be ahead of the join or behind it, so a change could meet the other side as it will be
//! later, and a deletion could find its own row already gone and retract nothing. Kafka
//! Streams keeps each joined table's store in the join's own task for the same reason, and so
//! does Eddy: a [`TableRows`] is written only by the join operator that reads the table's
//! changes, in the join's input order, and commits with the join's input positions. Both
//! sides then see each other exactly as of the records the join has processed, after a crash
//! too.
//!
//! Rows are kept as the materialization keeps them (`encode_row` of the key columns → the
//! row's timestamp then its value columns), in a [`StagedStore`], so that a change is visible
//! to the next record at once and reaches RocksDB with the query's commit.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use eddy_state::Commit;

use crate::column_decoder::ColumnDecoder;
use crate::error::{EngineError, Result};
use crate::lookup_join::{decode_stored_row, row_types};
use crate::operator::{Operator, OperatorContext};
use crate::staged_store::StagedStore;
use crate::state_codec::encode_at;

/// One table's rows, shared by the join's two operators: the one that reads the table's
/// changes writes it, the other reads it. Both run on the query's one task.
#[derive(Clone)]
pub struct TableRows(Arc<Mutex<Rows>>);

pub struct Rows {
    store: StagedStore,
    /// The types a row is stored with: its timestamp, then its value columns'.
    row_types: Vec<DataType>,
}

impl TableRows {
    /// The rows in `store`, whose value columns have the types `value_types`.
    pub fn new(store: StagedStore, value_types: &[DataType]) -> TableRows {
        TableRows(Arc::new(Mutex::new(Rows {
            store,
            row_types: row_types(value_types),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Rows> {
        self.0.lock().expect("a table join's rows")
    }
}

impl Rows {
    /// The row of the key `encoded` (by `encode_row` of its key columns): its timestamp and
    /// values.
    pub fn get(&self, encoded: &[u8]) -> Result<Option<(i64, Vec<ScalarValue>)>> {
        match self.store.get(encoded)? {
            Some(bytes) => Ok(Some(decode_stored_row(
                self.store.name(),
                &self.row_types,
                &bytes,
            )?)),
            None => Ok(None),
        }
    }

    /// The rows of `keys` (sorted), looked up together, as columns with a cell per key: each
    /// row's timestamp, then its value columns, null where a key has no row. Also whether
    /// each key has one. The cells go straight from RocksDB's bytes into Arrow builders.
    pub fn get_columns(&self, keys: &[&[u8]]) -> Result<(Vec<ArrayRef>, Vec<bool>)> {
        let corrupt = |message: String| {
            EngineError::State(eddy_state::StateError::Corrupt {
                store: self.store.name().to_string(),
                message,
            })
        };
        let mut columns: Vec<ColumnDecoder<'static>> = self
            .row_types
            .iter()
            .map(|t| ColumnDecoder::new(t, keys.len()))
            .collect();
        let mut found = vec![false; keys.len()];
        self.store.get_many(keys, |i, bytes| {
            match bytes {
                Some(mut bytes) => {
                    found[i] = true;
                    for column in &mut columns {
                        column.push_copied(&mut bytes).map_err(corrupt)?;
                    }
                    if !bytes.is_empty() {
                        return Err(corrupt(format!(
                            "{} bytes left over after a row",
                            bytes.len()
                        )));
                    }
                }
                None => columns.iter_mut().for_each(ColumnDecoder::push_null),
            }
            Ok(())
        })?;
        let columns = columns
            .into_iter()
            .map(|c| {
                c.finish()
                    .ok_or_else(|| corrupt("a nested value does not parse".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((columns, found))
    }

    pub fn contains(&self, encoded: &[u8]) -> Result<bool> {
        Ok(self.store.get(encoded)?.is_some())
    }

    /// Applies the change in `batch`'s row `row` to the key `encoded`: its row becomes the
    /// batch row's timestamp (column 0) and `values` columns, or is deleted.
    pub fn apply(
        &mut self,
        encoded: Vec<u8>,
        batch: &RecordBatch,
        row: usize,
        values: Range<usize>,
        deleted: bool,
    ) -> Result<()> {
        if deleted {
            self.store.delete(encoded);
            return Ok(());
        }
        let mut stored = Vec::with_capacity(16 * (1 + values.len()));
        for c in std::iter::once(0).chain(values) {
            encode_at(batch.column(c), row, &mut stored).map_err(EngineError::Plan)?;
        }
        self.store.put(encoded, stored);
        Ok(())
    }

    /// Stages the changes since the last commit in `commit` (see [`StagedStore::checkpoint`]).
    pub fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.store.checkpoint(commit, 0)
    }

    /// Whether the changes waiting for a commit have reached what the store keeps in memory.
    pub fn is_full(&self) -> bool {
        self.store.is_full()
    }

    /// The name of the store the rows are kept in.
    pub fn name(&self) -> &str {
        self.store.name()
    }
}

/// The table side of a stream-table join: the table's changes go into the join's copy of the
/// table ([`TableRows`]) and no further. A table update alone joins nothing (ksqlDB's
/// semantics); the stream side reads the copy.
pub struct TableSide {
    rows: TableRows,
    /// The change's key column; its values follow it.
    key: usize,
    values: Range<usize>,
    null_value: usize,
    /// The join's output schema (this operator emits no rows of it).
    schema: SchemaRef,
}

impl TableSide {
    /// Keeps the table's changes, batches of `table_schema` with one key column then
    /// `value_count` value columns, in `rows`.
    pub fn new(
        rows: TableRows,
        value_count: usize,
        table_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<TableSide> {
        let key = crate::schema::PSEUDO_COLUMNS;
        Ok(TableSide {
            rows,
            key,
            values: key + 1..key + 1 + value_count,
            null_value: table_schema.index_of(crate::schema::NULL_VALUE)?,
            schema,
        })
    }
}

impl Operator for TableSide {
    fn describe(&self) -> String {
        format!(
            "Table rows kept for the join in {}",
            self.rows.lock().name()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let mut rows = self.rows.lock();
        let deleted = batch.column(self.null_value).as_boolean();
        let keys = batch.column(self.key);
        for row in 0..batch.num_rows() {
            if keys.is_null(row) {
                continue;
            }
            let mut encoded = Vec::with_capacity(16);
            encode_at(keys, row, &mut encoded).map_err(EngineError::Plan)?;
            rows.apply(
                encoded,
                &batch,
                row,
                self.values.clone(),
                deleted.value(row),
            )?;
        }
        Ok(RecordBatch::new_empty(self.schema.clone()))
    }

    fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.rows.lock().checkpoint(commit)
    }

    fn wants_commit(&self) -> bool {
        self.rows.lock().is_full()
    }
}
