//! What one update of an aggregate reads: its group's values and its calls' arguments, from
//! the input batch's row where they are at hand (no value made per row), or as values the
//! state kept (a closing window, a table row's previous group and arguments).

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;

use super::udaf::{Acc, AggCall};
use crate::error::{EngineError, Result};

/// Where an output row's grouping values come from.
pub(super) enum GroupVals {
    /// The input row that updated the group: its grouping columns are copied over a batch at
    /// a time, with no value made per row.
    Input(usize),
    /// Values decoded from the state (a closing window, a table row's previous group).
    Values(Vec<ScalarValue>),
}

/// The arguments of the aggregate calls for one update.
#[derive(Clone, Copy)]
pub(super) enum Args<'a> {
    /// Row `.1` of the input batch, read column by column ([`AggCall::update_at`]).
    Row(&'a RecordBatch, usize),
    /// One value per call (a table row's previous arguments, from the state).
    Values(&'a [ScalarValue]),
}

impl Args<'_> {
    pub(super) fn apply(self, calls: &[AggCall], accs: &mut [Acc], undo: bool) -> Result<()> {
        for (i, (c, acc)) in calls.iter().zip(accs).enumerate() {
            match self {
                Args::Row(batch, row) if !undo => c.update_at(acc, batch.column(c.arg), row),
                Args::Row(batch, row) => ScalarValue::try_from_array(batch.column(c.arg), row)
                    .map_err(|e| e.to_string())
                    .and_then(|v| c.undo(acc, &v)),
                Args::Values(vs) if undo => c.undo(acc, &vs[i]),
                Args::Values(vs) => c.update(acc, &vs[i]),
            }
            .map_err(EngineError::Plan)?;
        }
        Ok(())
    }
}
