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
//! Both sides' operators share one [`StreamJoinState`]: the pipeline runs them one after the
//! other on one thread, so the lock is never contended. Buffers are [`StagedStore`]s, written
//! to RocksDB with the query's commit: buffered records, their expiry and the stream time all
//! survive a crash exactly as committed.
//!
//! Buffer keys are `[segment][key length][key][time][partition][offset]`: the segment (time /
//! segment length) lets expired records go as one range deletion, and the key-then-time order
//! makes a lookup one range scan per segment. Waiting outer records are keyed `[time][side][key
//! length][key][partition][offset]`, so closed windows come first, in time order.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    new_empty_array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray,
    RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::{NULL_VALUE, PSEUDO_COLUMNS};
use crate::staged_store::StagedStore;
use crate::state_codec::{decode_row, encode_row};
use crate::table_join::Keep;

/// Kafka Streams' retention for joins declared without a grace period: one day in all.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Where the buffers' times and the stream time are kept (above every buffer key, whose first
/// byte is a segment number's high byte, at most 0x7f).
const META_KEY: &[u8] = &[0xff];

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

/// The stores a stream-stream join keeps.
pub struct JoinStores {
    pub left: StagedStore,
    pub right: StagedStore,
    /// Unmatched records of outer sides waiting for their window to close.
    pub waiting: StagedStore,
}

/// The state both sides of a stream-stream join share.
pub struct StreamJoinState {
    windows: JoinWindows,
    keep: Keep,
    primary: JoinSide,
    buffers: [StagedStore; 2],
    waiting: Option<StagedStore>,
    /// The largest time put into each buffer (`i64::MIN`: none yet).
    observed: [i64; 2],
    stream_time: i64,
    /// A lower bound of the waiting records' times (`None`: unknown), to skip looking at them
    /// while none can have closed.
    min_waiting: Option<i64>,
    segment_ms: i64,
    key_types: Vec<DataType>,
    /// Each side's buffered row: its pseudo-columns, then its buffered columns.
    row_types: [Vec<DataType>; 2],
    meta_changed: bool,
}

/// A joined (or null-padded) row, before it becomes part of a batch.
struct Joined {
    rowtime: i64,
    partition: i32,
    offset: i64,
    key: Vec<ScalarValue>,
    /// Each side's row (pseudo-columns, then buffered columns), if it has one.
    sides: [Option<Vec<ScalarValue>>; 2],
}

/// A buffered record found by a lookup.
struct Buffered {
    time: i64,
    partition: u32,
    offset: u64,
    row: Vec<ScalarValue>,
}

fn corrupt(store: &str, message: String) -> EngineError {
    EngineError::State(eddy_state::StateError::Corrupt {
        store: store.to_string(),
        message,
    })
}

fn time_bytes(t: i64) -> [u8; 8] {
    (t.max(0) as u64).to_be_bytes()
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl StreamJoinState {
    /// `column_types` are each side's buffered columns'.
    pub fn new(
        windows: JoinWindows,
        keep: Keep,
        key_types: Vec<DataType>,
        column_types: [Vec<DataType>; 2],
        stores: JoinStores,
    ) -> Result<Arc<Mutex<StreamJoinState>>> {
        let row_types = column_types.map(|types| {
            let mut row = vec![DataType::Int64, DataType::Int32, DataType::Int64];
            row.extend(types);
            row
        });
        let outer = keep != Keep::Inner;
        let mut state = StreamJoinState {
            windows,
            keep,
            primary: if keep == Keep::Right {
                JoinSide::Right
            } else {
                JoinSide::Left
            },
            buffers: [stores.left, stores.right],
            waiting: (outer && windows.wait_for_close).then_some(stores.waiting),
            observed: [i64::MIN; 2],
            stream_time: i64::MIN,
            min_waiting: None,
            segment_ms: (windows.retention() / 2).max(60_000),
            key_types,
            row_types,
            meta_changed: false,
        };
        if let Some(meta) = state.buffers[0].get(META_KEY)? {
            if meta.len() != 24 {
                return Err(corrupt(state.buffers[0].name(), "bad join times".into()));
            }
            let at = |i: usize| read_u64(&meta, i * 8) as i64;
            state.observed = [at(0), at(1)];
            state.stream_time = at(2);
        }
        Ok(Arc::new(Mutex::new(state)))
    }

    /// The window seen from `side`: how far back and ahead its records look.
    fn bounds(&self, side: JoinSide) -> (i64, i64) {
        if side == self.primary {
            (self.windows.before_ms, self.windows.after_ms)
        } else {
            (self.windows.after_ms, self.windows.before_ms)
        }
    }

    fn is_outer(&self, side: JoinSide) -> bool {
        match self.keep {
            Keep::Inner => false,
            Keep::Left => side == JoinSide::Left,
            Keep::Right => side == JoinSide::Right,
            Keep::Full => true,
        }
    }

    fn segment(&self, time: i64) -> u64 {
        (time.max(0) / self.segment_ms) as u64
    }

    fn buffer_key(&self, key: &[u8], time: i64, partition: u32, offset: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(32 + key.len());
        k.extend_from_slice(&self.segment(time).to_be_bytes());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k.extend_from_slice(&time_bytes(time));
        k.extend_from_slice(&partition.to_be_bytes());
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }

    fn waiting_key(
        &self,
        side: JoinSide,
        key: &[u8],
        time: i64,
        partition: u32,
        offset: u64,
    ) -> Vec<u8> {
        let mut k = Vec::with_capacity(25 + key.len());
        k.extend_from_slice(&time_bytes(time));
        // Kafka Streams orders the primary side after the other at equal times.
        k.push(u8::from(side == self.primary));
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k.extend_from_slice(&partition.to_be_bytes());
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }

    /// Buffers a record of `side`, unless its buffer has already expired its time.
    fn buffer(
        &mut self,
        side: JoinSide,
        key: &[u8],
        time: i64,
        partition: u32,
        offset: u64,
        row: Vec<u8>,
    ) {
        let i = side.index();
        if time > self.observed[i] {
            self.observed[i] = time;
            self.meta_changed = true;
        }
        let live_from = self.observed[i].saturating_sub(self.windows.retention());
        if time <= live_from {
            return;
        }
        let k = self.buffer_key(key, time, partition, offset);
        self.buffers[i].put(k, row);
        if live_from > 0 {
            let bound = self.segment(live_from).to_be_bytes();
            self.buffers[i].delete_below(&bound);
        }
    }

    /// The records of `side`'s buffer with key `key` that a record of the other side at `time`
    /// joins, in time order.
    fn lookup(&self, side: JoinSide, key: &[u8], time: i64) -> Result<Vec<Buffered>> {
        let (before, after) = self.bounds(side.other());
        let mut from = time.saturating_sub(before).max(0);
        let to = time.saturating_add(after).max(0);
        let observed = self.observed[side.index()];
        if observed != i64::MIN {
            from = from.max(observed - self.windows.retention() + 1);
        }
        if to < from {
            return Ok(Vec::new());
        }
        let buffer = &self.buffers[side.index()];
        let mut found = Vec::new();
        for segment in self.segment(from)..=self.segment(to) {
            let mut prefix = segment.to_be_bytes().to_vec();
            prefix.extend_from_slice(&(key.len() as u32).to_be_bytes());
            prefix.extend_from_slice(key);
            let mut start = prefix.clone();
            start.extend_from_slice(&time_bytes(from));
            let mut end = prefix;
            end.extend_from_slice(&((to as u64) + 1).to_be_bytes());
            for (k, v) in buffer.range(&start, Some(&end))? {
                let at = 12 + key.len();
                let row = decode_row(&self.row_types[side.index()], &v)
                    .map_err(|e| corrupt(buffer.name(), e))?;
                found.push(Buffered {
                    time: read_u64(&k, at) as i64,
                    partition: read_u32(&k, at + 8),
                    offset: read_u64(&k, at + 12),
                    row,
                });
            }
        }
        Ok(found)
    }

    /// Emits the waiting records whose windows have closed, if a record of `side` may have
    /// closed some.
    fn emit_closed(&mut self, side: JoinSide, out: &mut Vec<Joined>) -> Result<()> {
        let (_, after) = self.bounds(side);
        let grace = self.windows.grace_ms;
        let stream_time = self.stream_time;
        if self
            .min_waiting
            .is_some_and(|m| m.saturating_add(after + grace) >= stream_time)
        {
            return Ok(());
        }
        let Some(waiting) = &self.waiting else {
            return Ok(());
        };
        let entries = waiting.range(&[], None)?;
        self.min_waiting = None;
        let mut open = [false; 2];
        let mut emitted = Vec::new();
        for (k, v) in entries {
            let time = read_u64(&k, 0) as i64;
            self.min_waiting = Some(time);
            if open[0] && open[1] {
                break;
            }
            let side = if k[8] == 1 {
                self.primary
            } else {
                self.primary.other()
            };
            let (_, look_ahead) = self.bounds(side);
            if time.saturating_add(look_ahead + grace) >= stream_time {
                open[side.index()] = true;
                continue;
            }
            let key_len = read_u32(&k, 9) as usize;
            let key_bytes = &k[13..13 + key_len];
            let name = waiting.name();
            let key = decode_row(&self.key_types, key_bytes).map_err(|e| corrupt(name, e))?;
            let row =
                decode_row(&self.row_types[side.index()], &v).map_err(|e| corrupt(name, e))?;
            let at = 13 + key_len;
            let mut sides = [None, None];
            sides[side.index()] = Some(row);
            out.push(Joined {
                rowtime: time,
                partition: read_u32(&k, at) as i32,
                offset: read_u64(&k, at + 4) as i64,
                key,
                sides,
            });
            emitted.push(k);
        }
        if let Some(waiting) = &mut self.waiting {
            for k in emitted {
                waiting.delete(k);
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        if self.meta_changed {
            let mut meta = Vec::with_capacity(24);
            for t in [self.observed[0], self.observed[1], self.stream_time] {
                meta.extend_from_slice(&(t as u64).to_be_bytes());
            }
            self.buffers[0].put(META_KEY.to_vec(), meta);
            self.meta_changed = false;
        }
        let time = self.stream_time.max(0);
        for b in &mut self.buffers {
            b.checkpoint(commit, time)?;
        }
        if let Some(w) = &mut self.waiting {
            w.checkpoint(commit, time)?;
        }
        Ok(())
    }
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
            schema,
        })
    }

    fn build(&self, rows: Vec<Joined>) -> Result<RecordBatch> {
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
        for (j, c) in self.output.iter().enumerate() {
            let t = self.schema.field(PSEUDO_COLUMNS + j).data_type();
            let null = ScalarValue::try_from(t)?;
            let values = rows.iter().map(|r| match *c {
                StreamJoinColumn::Key(i) => r.key[i].clone(),
                StreamJoinColumn::Column(side, i) => match &r.sides[side.index()] {
                    Some(row) => row[PSEUDO_COLUMNS + i].clone(),
                    None => null.clone(),
                },
                StreamJoinColumn::Pseudo(side, i) => match &r.sides[side.index()] {
                    Some(row) => row[i].clone(),
                    None => null.clone(),
                },
            });
            let array = ScalarValue::iter_to_array(values)?;
            columns.push(if array.data_type() == t {
                array
            } else {
                cast(&array, t)?
            });
        }
        columns.push(Arc::new(BooleanArray::from(vec![false; n])));
        let headers = self.schema.field(self.schema.fields().len() - 1);
        let DataType::List(entry) = headers.data_type() else {
            return Err(EngineError::Plan("headers are a list".into()));
        };
        columns.push(Arc::new(ListArray::new(
            entry.clone(),
            OffsetBuffer::new_zeroed(n),
            new_empty_array(entry.data_type()),
            None,
        )));
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
        let mut out = Vec::new();
        for row in 0..n {
            let time = rowtimes.value(row);
            if time > state.stream_time {
                state.stream_time = time;
                state.meta_changed = true;
            }
            if null_values.value(row) {
                continue;
            }
            let key = keys
                .iter()
                .map(|k| ScalarValue::try_from_array(k, row))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let (partition, offset) = (partitions.value(row), offsets.value(row));
            let mut own = Vec::with_capacity(PSEUDO_COLUMNS + self.columns.len());
            own.push(ScalarValue::Int64(Some(time)));
            own.push(ScalarValue::Int32(Some(partition)));
            own.push(ScalarValue::Int64(Some(offset)));
            for &c in &self.columns {
                own.push(ScalarValue::try_from_array(batch.column(c), row)?);
            }
            let joined = |other: Option<(i64, Vec<ScalarValue>)>, own: &Vec<ScalarValue>| {
                let mut sides = [None, None];
                let rowtime = match other {
                    Some((t, row)) => {
                        sides[side.other().index()] = Some(row);
                        t.max(time)
                    }
                    None => time,
                };
                sides[side.index()] = Some(own.clone());
                Joined {
                    rowtime,
                    partition,
                    offset,
                    key: key.clone(),
                    sides,
                }
            };
            if key.iter().any(ScalarValue::is_null) {
                if state.is_outer(side) {
                    out.push(joined(None, &own));
                }
                continue;
            }
            let encoded = encode_row(&key).map_err(EngineError::Plan)?;
            let value = encode_row(&own).map_err(EngineError::Plan)?;
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
            let matches = state.lookup(side.other(), &encoded, time)?;
            let unmatched = matches.is_empty();
            for m in matches {
                // A record the other side was holding back has found its match.
                let k = state.waiting_key(side.other(), &encoded, m.time, m.partition, m.offset);
                if let Some(w) = &mut state.waiting {
                    if w.get(&k)?.is_some() {
                        w.delete(k);
                    }
                }
                out.push(joined(Some((m.time, m.row)), &own));
            }
            if unmatched && state.is_outer(side) {
                let (_, after) = state.bounds(side);
                if state.waiting.is_none() || time.saturating_add(after) < state.stream_time {
                    out.push(joined(None, &own));
                } else {
                    let k =
                        state.waiting_key(side, &encoded, time, partition as u32, offset as u64);
                    if let Some(w) = &mut state.waiting {
                        w.put(k, value);
                    }
                    state.min_waiting = Some(state.min_waiting.map_or(time, |m| m.min(time)));
                }
            }
        }
        drop(state);
        self.build(out)
    }

    fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        self.state.lock().expect("join state").checkpoint(commit)
    }
}
