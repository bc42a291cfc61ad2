//! Stream-stream joins: each side's records are buffered for the join window, and each record
//! joins the other side's buffered records whose key is equal and whose time is close enough.
//!
//! Semantics are Kafka Streams' (ksqlDB runs its joins on them), spelled out because they are
//! what users see:
//!
//! - **Window.** `WITHIN (before, after)`: a left record at `t` joins right records with times in
//!   `[t - before, t + after]`; a right record at `t` joins left records in `[t - after, t +
//!   before]`. `WITHIN n` is `(n, n)`. A joined row's time is the later of the two records'.
//!   ksqlDB runs a RIGHT join as the right stream left-joined with the left one, so there the
//!   window is oriented from the right side: the *primary* side below.
//! - **Stream time** is the largest record time either side has seen. Each side's buffer also
//!   tracks the largest time put into it (its observed time) and keeps records for `retention =
//!   before + after + grace`: a record older than its buffer's observed time minus retention is
//!   neither buffered nor found (Kafka Streams' window store does the same), which is what
//!   makes a very late record miss a match that is still buffered on the other side.
//! - **Grace.** Without `GRACE PERIOD`, grace is Kafka Streams' old default (a day less twice
//!   the window) and an outer join emits its null-padded row as soon as a record finds no match
//!   (a match arriving later emits the joined row too). With `GRACE PERIOD`, an unmatched record
//!   of an outer side waits in a third store until its window closes (stream time passes its
//!   time + the window's far edge + grace); if a match comes first it is dropped from there,
//!   else the null-padded row is emitted then, with the record's own time. An unmatched record
//!   whose window has already closed when it arrives is emitted at once.
//! - Records without a value, or whose join key is null, take no part (an outer side's record
//!   with a null key is emitted null-padded at once, as Kafka Streams does).
//!
//! Both sides' operators share one [`StreamJoinState`] per task: the task runs them one after
//! the other on one thread, so the lock is never contended. Buffers are [`StagedStore`]s,
//! written to RocksDB with the task's commit: buffered records, their expiry and the stream
//! time (the task's, of its partition of both sides) all survive a crash exactly as committed.
//!
//! Buffer keys are `[segment][key length][key][time][partition][offset]`: the segment (time /
//! segment length) lets expired records go as one range deletion, and the key-then-time order
//! makes a lookup one range scan per segment. Waiting outer records are keyed `[time][side][key
//! length][key][partition][offset]`, so closed windows come first, in time order.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Int32Type, Int64Type, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::{no_headers, scalar_column, NULL_VALUE, PSEUDO_COLUMNS};
use crate::staged_store::StagedStore;
use crate::state_codec::{encode, encode_at};

mod key_filter;
mod state;
#[cfg(test)]
mod tests;

pub use state::{JoinStores, StreamJoinState};
use state::{Joined, SideRow};

/// Kafka Streams' retention for joins declared without a grace period: one day in all.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A join's window: `WITHIN (before, after) [GRACE PERIOD grace]`, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinWindows {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
    /// Whether a GRACE PERIOD was given: outer joins then emit their null-padded rows only
    /// once the window has closed (Kafka Streams' fix for spurious outer results).
    pub wait_for_close: bool,
}

impl JoinWindows {
    pub fn new(before_ms: i64, after_ms: i64, grace_ms: Option<i64>) -> JoinWindows {
        match grace_ms {
            Some(grace_ms) => JoinWindows {
                before_ms,
                after_ms,
                grace_ms,
                wait_for_close: true,
            },
            None => JoinWindows {
                before_ms,
                after_ms,
                grace_ms: (DAY_MS - 2 * before_ms).max(0),
                wait_for_close: false,
            },
        }
    }

    fn retention(&self) -> i64 {
        self.before_ms + self.after_ms + self.grace_ms
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinSide {
    Left,
    Right,
}

impl JoinSide {
    fn index(self) -> usize {
        match self {
            JoinSide::Left => 0,
            JoinSide::Right => 1,
        }
    }

    fn other(self) -> JoinSide {
        match self {
            JoinSide::Left => JoinSide::Right,
            JoinSide::Right => JoinSide::Left,
        }
    }
}

/// Where a column of the joined row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamJoinColumn {
    /// A part of the join key (one per equality of the join condition).
    Key(usize),
    /// A buffered column of a side, by its position among that side's buffered columns.
    Column(JoinSide, usize),
    /// A side's pseudo-column (ROWTIME, ROWPARTITION, ROWOFFSET), by index.
    Pseudo(JoinSide, usize),
}

/// One side of a stream-stream join: joins its records with the other side's buffer.
pub struct StreamStreamJoin {
    side: JoinSide,
    state: Arc<Mutex<StreamJoinState>>,
    /// The join key's parts, over this side's batches.
    key: Vec<Arc<dyn PhysicalExpr>>,
    /// The columns this side buffers, by index in its batches.
    columns: Vec<usize>,
    output: Vec<StreamJoinColumn>,
    null_value: usize,
    /// This side's `__HEADERS` column.
    headers: usize,
    schema: SchemaRef,
}

impl StreamStreamJoin {
    /// `schema` is the joined rows' (a source layout of `output`).
    pub fn new(
        side: JoinSide,
        state: Arc<Mutex<StreamJoinState>>,
        key: Vec<Arc<dyn PhysicalExpr>>,
        columns: Vec<usize>,
        output: Vec<StreamJoinColumn>,
        own_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<StreamStreamJoin> {
        Ok(StreamStreamJoin {
            side,
            state,
            key,
            columns,
            output,
            null_value: own_schema.index_of(NULL_VALUE)?,
            headers: own_schema.index_of(crate::schema::HEADERS)?,
            schema,
        })
    }

    /// Row `r`'s value of output column `c`; `None` when it is the input row's, in its batch.
    fn part(c: &StreamJoinColumn, r: &Joined) -> Option<ScalarValue> {
        let side_value = |side: JoinSide, at: usize| match &r.sides[side.index()] {
            SideRow::Values(row) => Some(row[at].clone()),
            SideRow::Input => None,
            SideRow::Absent => Some(ScalarValue::Null),
        };
        match *c {
            StreamJoinColumn::Key(i) => r.key.as_ref().map(|k| k[i].clone()),
            StreamJoinColumn::Column(side, i) => side_value(side, PSEUDO_COLUMNS + i),
            StreamJoinColumn::Pseudo(side, i) => side_value(side, i),
        }
    }

    /// The batch of `rows`. What the records of `input` (this side's batch, whose join key
    /// parts are `keys`) contribute is taken from it by row; the rest is built from values.
    fn build(
        &self,
        rows: Vec<Joined>,
        input: &RecordBatch,
        keys: &[ArrayRef],
    ) -> Result<RecordBatch> {
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rowtime))),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.partition),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        ];
        let own = self.side.index();
        for (j, c) in self.output.iter().enumerate() {
            let t = self.schema.field(PSEUDO_COLUMNS + j).data_type();
            // The other side's columns are not in this side's batch: never taken from it.
            let from_input = match *c {
                StreamJoinColumn::Key(i) => Some(&keys[i]),
                StreamJoinColumn::Column(side, i) => {
                    (side.index() == own).then(|| input.column(self.columns[i]))
                }
                StreamJoinColumn::Pseudo(side, i) => (side.index() == own).then(|| input.column(i)),
            };
            let null = ScalarValue::try_from(t)?;
            let mut values = Vec::new();
            let picks: Vec<(usize, usize)> = rows
                .iter()
                .map(|r| match (Self::part(c, r), r.input_row) {
                    (None, Some(row)) => (0, row),
                    (v, _) => {
                        values.push(match v {
                            Some(ScalarValue::Null) | None => null.clone(),
                            Some(v) => v,
                        });
                        (1, values.len() - 1)
                    }
                })
                .collect();
            let from_input = match from_input {
                Some(a) if a.data_type() == t => a.clone(),
                Some(a) => cast(a, t)?,
                None => datafusion::arrow::array::new_empty_array(t),
            };
            let values = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(t)
            } else {
                scalar_column(values, t)?
            };
            columns.push(datafusion::arrow::compute::interleave(
                &[from_input.as_ref(), values.as_ref()],
                &picks,
            )?);
        }
        columns.push(Arc::new(BooleanArray::from(vec![false; n])));
        let none = no_headers(1);
        let headers = input.column(self.headers);
        let picks: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| r.input_row.map_or((1, 0), |row| (0, row)))
            .collect();
        columns.push(datafusion::arrow::compute::interleave(
            &[headers.as_ref(), none.as_ref()],
            &picks,
        )?);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl Operator for StreamStreamJoin {
    fn describe(&self) -> String {
        let state = self.state.lock().expect("join state");
        let w = state.windows;
        format!(
            "{:?} stream-stream join of the {} side's records with the {} side's buffered ones, WITHIN ({} ms, {} ms) GRACE PERIOD {} ms",
            state.keep,
            if self.side == JoinSide::Left { "left" } else { "right" },
            if self.side == JoinSide::Left { "right" } else { "left" },
            w.before_ms,
            w.after_ms,
            w.grace_ms
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, _ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut state = self.state.lock().expect("join state");
        let keys = self
            .key
            .iter()
            .zip(&state.key_types)
            .map(|(e, t)| {
                let a = e.evaluate(&batch)?.into_array(n)?;
                Ok(cast(&a, t)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let rowtimes = batch.column(0).as_primitive::<Int64Type>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        let null_values = batch.column(self.null_value).as_boolean();
        let side = self.side;
        // Each row's join key, and its encoding unless a part is null. A record without a value
        // takes no part (`None`); nor does one with a negative time (Kafka Streams drops those
        // as invalid), which no window arithmetic covers.
        // (`Some(None)`: takes part, with a null key.)
        let row_keys = (0..n)
            .map(|row| {
                if null_values.value(row) || rowtimes.value(row) < 0 {
                    return Ok(None);
                }
                if keys.iter().any(|k| k.is_null(row)) {
                    return Ok(Some(None));
                }
                let mut encoded = Vec::new();
                for k in &keys {
                    encode_at(k, row, &mut encoded).map_err(EngineError::Plan)?;
                }
                Ok(Some(Some(encoded)))
            })
            .collect::<Result<Vec<_>>>()?;
        // One answer per row with a key, in row order, as the lookups below come.
        let mut may_be_stored = state
            .read_ahead(
                side.other(),
                row_keys
                    .iter()
                    .enumerate()
                    .filter_map(|(row, k)| Some((k.as_ref()?.as_deref()?, rowtimes.value(row)))),
            )?
            .into_iter();
        let mut out = Vec::new();
        for (row, row_key) in row_keys.into_iter().enumerate() {
            let time = rowtimes.value(row);
            if time > state.stream_time {
                state.stream_time = time;
                state.meta_changed = true;
            }
            let Some(encoded) = row_key else {
                continue;
            };
            let (partition, offset) = (partitions.value(row), offsets.value(row));
            let joined = |other: Option<(i64, Vec<ScalarValue>)>| {
                let mut sides = [SideRow::Absent, SideRow::Absent];
                let rowtime = match other {
                    Some((t, row)) => {
                        sides[side.other().index()] = SideRow::Values(row);
                        t.max(time)
                    }
                    None => time,
                };
                sides[side.index()] = SideRow::Input;
                Joined {
                    rowtime,
                    partition,
                    offset,
                    input_row: Some(row),
                    key: None,
                    sides,
                }
            };
            let Some(encoded) = encoded else {
                if state.is_outer(side) {
                    out.push(joined(None));
                }
                continue;
            };
            // The buffered row: pseudo-columns, then buffered columns, encoded from the batch.
            let mut value = Vec::new();
            for pseudo in [
                ScalarValue::Int64(Some(time)),
                ScalarValue::Int32(Some(partition)),
                ScalarValue::Int64(Some(offset)),
            ] {
                encode(&pseudo, &mut value).map_err(EngineError::Plan)?;
            }
            for &c in &self.columns {
                encode_at(batch.column(c), row, &mut value).map_err(EngineError::Plan)?;
            }
            state.buffer(
                side,
                &encoded,
                time,
                partition as u32,
                offset as u64,
                value.clone(),
            );
            if state.waiting.is_some() && time == state.stream_time {
                state.emit_closed(side, &mut out)?;
            }
            let stored = may_be_stored.next().expect("an answer per row with a key");
            let matches = state.lookup(side.other(), &encoded, time, stored)?;
            let unmatched = matches.is_empty();
            for m in matches {
                // A record the other side was holding back has found its match.
                let k = state.waiting_key(side.other(), &encoded, m.time, m.partition, m.offset);
                if let Some(w) = &mut state.waiting {
                    if w.get(&k)?.is_some() {
                        w.delete(k);
                    }
                }
                out.push(joined(Some((m.time, m.row))));
            }
            if unmatched && state.is_outer(side) {
                let (_, after) = state.bounds(side);
                if state.waiting.is_none() || time.saturating_add(after) < state.stream_time {
                    out.push(joined(None));
                } else {
                    let k =
                        state.waiting_key(side, &encoded, time, partition as u32, offset as u64);
                    if let Some(w) = &mut state.waiting {
                        w.put(k, value);
                    }
                    // Unknown (`None`, after a restart) stays unknown until a scan.
                    state.min_waiting = state.min_waiting.map(|m| m.min(time));
                }
            }
        }
        state.forget_read_ahead();
        drop(state);
        self.build(out, &batch, &keys)
    }

    fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        self.state.lock().expect("join state").checkpoint(commit)
    }

    fn wants_commit(&self) -> bool {
        let state = self.state.lock().expect("join state");
        state
            .buffers
            .iter()
            .chain(&state.waiting)
            .any(StagedStore::is_full)
    }

    fn skew_tolerance_ms(&self) -> Option<i64> {
        Some(self.state.lock().expect("join state").windows.grace_ms)
    }
}
