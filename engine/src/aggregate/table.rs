//! Aggregations over tables: a row replaces its key's previous row, whose arguments go back
//! out of the group they went to ([`super::udaf::AggCall::undo`]).
//!
//! In one pipeline the [`Aggregate`] keeps each key's last row itself (`process_table_row`).
//! Behind a repartition topic it applies the changes a [`super::Regroup`] sent instead
//! (`process_change`). Either way a group's result is emitted once per change that touches it.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::common::ScalarValue;

use super::group::PrevRow;
use super::operator::Aggregate;
use super::output::Emit;
use super::row::{Args, GroupVals};
use crate::error::{EngineError, Result};
use crate::state_codec::{decode_row, encode_at, encode_row};

impl Aggregate {
    /// A table row replaced (or deleted) the previous row of its key.
    pub(super) fn process_table_row(
        &mut self,
        source_key: Vec<u8>,
        new: Option<PrevRow>,
        ts: i64,
        out: &mut Vec<Emit>,
    ) -> Result<()> {
        let types = [self.group_types.clone(), self.arg_types.clone()].concat();
        let ng = self.group_types.len();
        let prev = self.table_rows.take(&source_key, |b| {
            let mut row = decode_row(&types, b)?;
            let args = row.split_off(ng);
            Ok(PrevRow { group: row, args })
        })?;
        let new_key = match &new {
            Some(n) => Some(encode_row(&n.group).map_err(EngineError::Plan)?),
            None => None,
        };
        if let Some(p) = prev {
            let key = encode_row(&p.group).map_err(EngineError::Plan)?;
            let (results, group_ts) = self.apply(&key, Args::Values(&p.args), ts, true)?;
            if new_key.as_ref() != Some(&key) {
                self.emit_results(out, GroupVals::Values(p.group), results, group_ts, None)?;
            }
        }
        match (new, new_key) {
            (Some(n), Some(key)) => {
                let (results, group_ts) = self.apply(&key, Args::Values(&n.args), ts, false)?;
                self.emit_results(
                    out,
                    GroupVals::Values(n.group.clone()),
                    results,
                    group_ts,
                    None,
                )?;
                self.table_rows.put(source_key, n);
            }
            _ => self.table_rows.delete(source_key),
        }
        Ok(())
    }

    /// A change from a [`super::Regroup`]: old arguments taken back out of the row's group
    /// and/or the row's own added, then the group's result emitted once.
    pub(super) fn process_change(
        &mut self,
        changes: &super::ChangeColumns,
        batch: &RecordBatch,
        row: usize,
        ts: i64,
        out: &mut Vec<Emit>,
    ) -> Result<()> {
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        for i in 0..self.group_types.len() {
            encode_at(batch.column(i), row, &mut key).map_err(EngineError::Plan)?;
        }
        let flag = |c: usize| batch.column(c).as_boolean().value(row);
        let mut result = None;
        if flag(changes.retract) {
            let old = changes
                .old_args
                .iter()
                .map(|&c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<Result<Vec<_>, _>>()?;
            result = Some(self.apply(&key, Args::Values(&old), ts, true)?);
        }
        if flag(changes.add) {
            result = Some(self.apply(&key, Args::Row(batch, row), ts, false)?);
        }
        self.key_buf = key;
        match result {
            Some((results, group_ts)) => {
                self.emit_results(out, GroupVals::Input(row), results, group_ts, None)
            }
            None => Ok(()),
        }
    }
}
