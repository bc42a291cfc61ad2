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

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use eddy_state::Commit;

use crate::error::{EngineError, Result};
use crate::lookup_join::{decode_stored_row, row_types};
use crate::staged_store::StagedStore;
use crate::state_codec::encode_row;

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
        let mut stored = Vec::with_capacity(1 + values.len());
        stored.push(ScalarValue::try_from_array(batch.column(0), row)?);
        for c in values {
            stored.push(ScalarValue::try_from_array(batch.column(c), row)?);
        }
        let stored = encode_row(&stored).map_err(EngineError::Plan)?;
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

    /// The underlying store, for what a join keeps beside the rows (a foreign-key index).
    pub fn store(&self) -> &StagedStore {
        &self.store
    }
}
