//! The aggregate operator: groups, windows, and the emission of every update.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use eddy_state::Commit;

use eddy_state::{StateDb, StateScope};

use super::group::{
    decode_group, decode_sessions, encode_group, encode_sessions, sortable_time,
    time_window_key_into, Group, PrevRow, Session,
};
use super::group_state::GroupState;
use super::output::Emit;
use super::row::{Args, GroupVals};
use super::udaf::{Acc, AggCall};
use super::window::{session_overlaps, WindowKind, WindowSpec};
use super::window_index::WindowIndex;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorContext};
use crate::schema::{headers_type, no_headers, HEADERS, NULL_VALUE};
use crate::state_codec::{decode_row, encode_at, encode_row};

pub use crate::schema::{WINDOWEND, WINDOWSTART};
/// The output column with each result's timestamp: the largest of its group's records'.
pub const AGG_ROWTIME: &str = "__ROWTIME";

/// What to aggregate. Input columns `0..group_fields.len()` are the grouping values.
pub struct AggregateSpec {
    pub group_fields: Vec<Field>,
    pub calls: Vec<AggCall>,
    /// Input column of the event time (BIGINT ms).
    pub rowtime: usize,
    /// Input column of the tombstone flag.
    pub null_value: usize,
    /// Input column of the record's headers, which the results it updates carry on (as Kafka
    /// Streams forwards the headers of the record being processed).
    pub headers: usize,
    pub window: Option<WindowSpec>,
    /// Over a table: the input columns that hold the source row's key, whose previous row is
    /// taken back out of its group when the key gets a new row or is deleted.
    pub table_key: Option<Vec<usize>>,
    /// Over a table's changes from a [`super::Regroup`] (then `table_key` is `None`): where
    /// each row says what it takes back out of its group and what it adds.
    pub changes: Option<super::ChangeColumns>,
}

/// Where an input row came from, to report it to the processing log.
struct RowOrigin<'c, 'b> {
    ctx: &'c OperatorContext<'c>,
    batch: &'b RecordBatch,
    row: usize,
}

impl RowOrigin<'_, '_> {
    fn report(&self, message: &str) -> Result<()> {
        self.ctx.report_row(self.batch, self.row, message)
    }
}

pub struct Aggregate {
    pub(super) spec: AggregateSpec,
    pub(super) schema: SchemaRef,
    pub(super) groups: GroupState<Group>,
    pub(super) sessions: GroupState<Vec<Session>>,
    pub(super) table_rows: GroupState<PrevRow>,
    /// The largest event time seen: windows close on it.
    pub(super) stream_time: i64,
    /// EMIT FINAL: windows updated and not yet emitted, by end time.
    pub(super) pending: WindowIndex,
    /// Every window in the state, by end time, to remove when its retention has passed.
    pub(super) live: WindowIndex,
    pub(super) clock: Option<(StateDb, String, String)>,
    pub(super) group_types: Vec<DataType>,
    pub(super) arg_types: Vec<DataType>,
    /// The spec's calls, shared so that a path that also borrows state mutably can hold them
    /// without copying them per record.
    pub(super) calls: Arc<[AggCall]>,
    /// Reused for each record's state key, so that a group already in memory costs no
    /// allocation.
    pub(super) key_buf: Vec<u8>,
}

/// The state an [`Aggregate`] keeps: in memory, or in RocksDB stores with changelogs.
pub struct AggregateState {
    groups: GroupState<Group>,
    sessions: GroupState<Vec<Session>>,
    table_rows: GroupState<PrevRow>,
    pending: GroupState<()>,
    live: GroupState<()>,
    /// Where stream time is kept: the database, and the owner and name it is recorded under.
    clock: Option<(StateDb, String, String)>,
}

impl AggregateState {
    pub fn in_memory() -> AggregateState {
        AggregateState {
            groups: GroupState::in_memory(),
            sessions: GroupState::in_memory(),
            table_rows: GroupState::in_memory(),
            pending: GroupState::in_memory(),
            live: GroupState::in_memory(),
            clock: None,
        }
    }

    /// State in `scope` (a task's), in stores named `<name>-groups` (and `-sessions`,
    /// `-rows`, ...), each with its changelog, restored from it if the local copy is behind.
    /// At most `capacity` groups per store stay decoded in memory. Stream time is the task's.
    pub fn persistent(scope: &StateScope, name: &str, capacity: usize) -> Result<AggregateState> {
        let open = |suffix: &str| format!("{name}-{suffix}");
        Ok(AggregateState {
            groups: GroupState::open(scope, &open("groups"), capacity)?,
            sessions: GroupState::open(scope, &open("sessions"), capacity)?,
            table_rows: GroupState::open(scope, &open("rows"), capacity)?,
            pending: GroupState::open(scope, &open("pending"), capacity)?,
            live: GroupState::open(scope, &open("windows"), capacity)?,
            clock: Some((
                scope.db().clone(),
                scope.owner().to_string(),
                scope.position_name(&format!("{name}/stream-time")),
            )),
        })
    }
}

impl Aggregate {
    /// The schema of the batches an aggregate with this spec emits: the grouping values, the
    /// results `__AGG0...`, `WINDOWSTART` and `WINDOWEND` (null unless windowed), the result's
    /// timestamp, the tombstone flag and the headers of the record that made it (none for
    /// results a closing window emits).
    pub fn output_schema_of(spec: &AggregateSpec) -> SchemaRef {
        let mut fields = spec.group_fields.clone();
        for (i, c) in spec.calls.iter().enumerate() {
            fields.push(Field::new(format!("__AGG{i}"), c.output_type(), true));
        }
        fields.push(Field::new(WINDOWSTART, DataType::Int64, true));
        fields.push(Field::new(WINDOWEND, DataType::Int64, true));
        fields.push(Field::new(AGG_ROWTIME, DataType::Int64, false));
        fields.push(Field::new(NULL_VALUE, DataType::Boolean, false));
        fields.push(Field::new(HEADERS, headers_type(), false));
        Arc::new(Schema::new(fields))
    }

    pub fn new(spec: AggregateSpec, state: AggregateState) -> Result<Aggregate> {
        let calls: Arc<[AggCall]> = spec.calls.clone().into();
        let group_types = spec
            .group_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let arg_types = spec.calls.iter().map(|c| c.arg_type.clone()).collect();
        Ok(Aggregate {
            schema: Self::output_schema_of(&spec),
            spec,
            groups: state.groups,
            sessions: state.sessions,
            table_rows: state.table_rows,
            stream_time: match &state.clock {
                Some((db, owner, name)) => db.offset(owner, name)?.map_or(i64::MIN, |t| t as i64),
                None => i64::MIN,
            },
            pending: WindowIndex::load(state.pending)?,
            live: WindowIndex::load(state.live)?,
            clock: state.clock,
            group_types,
            arg_types,
            calls,
            key_buf: Vec::new(),
        })
    }

    fn init(&self) -> Result<Vec<Acc>> {
        self.spec
            .calls
            .iter()
            .map(|c| c.init().map_err(EngineError::Plan))
            .collect()
    }

    pub(super) fn results(&self, accs: &[Acc]) -> Result<Vec<ScalarValue>> {
        self.spec
            .calls
            .iter()
            .zip(accs)
            .map(|(c, a)| c.result(a).map_err(EngineError::Plan))
            .collect()
    }

    /// Adds (or with `undo`, takes back) one row's arguments to the group `key`, returning the
    /// group's new state.
    pub(super) fn apply(
        &mut self,
        key: &[u8],
        args: Args<'_>,
        ts: i64,
        undo: bool,
    ) -> Result<(Vec<ScalarValue>, i64)> {
        let calls = &self.spec.calls;
        let group = self.groups.entry(
            key,
            |b| decode_group(calls, b),
            || {
                Ok(Group {
                    accs: calls
                        .iter()
                        .map(|c| c.init().map_err(EngineError::Plan))
                        .collect::<Result<_>>()?,
                    ts,
                })
            },
        )?;
        args.apply(calls, &mut group.accs, undo)?;
        group.ts = group.ts.max(ts);
        let results = calls
            .iter()
            .zip(&group.accs)
            .map(|(c, a)| c.result(a).map_err(EngineError::Plan))
            .collect::<Result<_>>()?;
        Ok((results, group.ts))
    }

    pub(super) fn emit_results(
        &self,
        out: &mut Vec<Emit>,
        group: GroupVals,
        results: Vec<ScalarValue>,
        ts: i64,
        window: Option<(i64, i64)>,
    ) -> Result<()> {
        out.push(Emit {
            group,
            results,
            window,
            ts,
            tombstone: false,
        });
        Ok(())
    }

    pub(super) fn emit_group(
        &self,
        out: &mut Vec<Emit>,
        group_vals: GroupVals,
        g: &Group,
        window: Option<(i64, i64)>,
    ) -> Result<()> {
        out.push(Emit {
            group: group_vals,
            results: self.results(&g.accs)?,
            window,
            ts: g.ts,
            tombstone: false,
        });
        Ok(())
    }

    /// Adds input row `origin.row`, of the group whose encoded values are `group_key`.
    fn process_row(
        &mut self,
        group_key: &[u8],
        ts: i64,
        out: &mut Vec<Emit>,
        origin: &RowOrigin<'_, '_>,
    ) -> Result<()> {
        let row = origin.row;
        let args = Args::Row(origin.batch, row);
        match self.spec.window {
            None => {
                let (results, group_ts) = self.apply(group_key, args, ts, false)?;
                self.emit_results(out, GroupVals::Input(row), results, group_ts, None)
            }
            Some(w) if !w.is_session() => {
                let mut key = std::mem::take(&mut self.key_buf);
                let result = (|| {
                    for (start, end) in w.windows_for(ts) {
                        if w.is_closed(end, self.stream_time) {
                            origin.report("a record for a window that has closed was dropped")?;
                            continue;
                        }
                        key.clear();
                        time_window_key_into(start, group_key, &mut key);
                        let (results, group_ts) = self.apply(&key, args, ts, false)?;
                        if w.emit_final {
                            self.pending.insert(end, key.clone());
                        } else {
                            self.emit_results(
                                out,
                                GroupVals::Input(row),
                                results,
                                group_ts,
                                Some((start, end)),
                            )?;
                        }
                    }
                    Ok(())
                })();
                self.key_buf = key;
                result
            }
            Some(w) => {
                let WindowKind::Session { gap } = w.kind else {
                    unreachable!("time windows handled above")
                };
                let calls = Arc::clone(&self.calls);
                let sessions = self
                    .sessions
                    .take(group_key, |b| decode_sessions(&calls, b))?
                    .unwrap_or_default();
                let (merging, mut kept): (Vec<Session>, Vec<Session>) = sessions
                    .into_iter()
                    .partition(|s| session_overlaps(gap, s.start, s.end, ts));
                let start = merging.iter().map(|s| s.start).fold(ts, i64::min);
                let end = merging.iter().map(|s| s.end).fold(ts, i64::max);
                if w.is_closed(end, self.stream_time) {
                    origin.report("a record for a session that has closed was dropped")?;
                    kept.extend(merging);
                    kept.sort_by_key(|s| s.start);
                    self.sessions.put(group_key.to_vec(), kept);
                    return Ok(());
                }
                let mut merged = Group {
                    accs: self.init()?,
                    ts,
                };
                for s in merging.iter().filter(|_| !w.emit_final) {
                    out.push(Emit {
                        group: GroupVals::Input(row),
                        results: Vec::new(),
                        window: Some((s.start, s.end)),
                        ts: s.group.ts,
                        tombstone: true,
                    });
                }
                // As Kafka Streams does: the sessions merge in time order, then the new record is
                // added, last (it is the latest by offset).
                for s in merging {
                    for (c, (acc, later)) in
                        calls.iter().zip(merged.accs.iter_mut().zip(s.group.accs))
                    {
                        c.merge(acc, later).map_err(EngineError::Plan)?;
                    }
                    merged.ts = merged.ts.max(s.group.ts);
                }
                args.apply(&calls, &mut merged.accs, false)?;
                let mut session_key = group_key.to_vec();
                session_key.extend_from_slice(&start.to_be_bytes());
                self.live.insert(end, session_key.clone());
                if w.emit_final {
                    self.pending.insert(end, session_key);
                } else {
                    self.emit_group(out, GroupVals::Input(row), &merged, Some((start, end)))?;
                }
                kept.push(Session {
                    start,
                    end,
                    group: merged,
                });
                kept.sort_by_key(|s| s.start);
                self.sessions.put(group_key.to_vec(), kept);
                Ok(())
            }
        }
    }

    /// The current result of every group (and window) of the aggregate whose state is in the
    /// stores `name` of `scopes` (its tasks', as [`AggregateState::persistent`] named them),
    /// as of their last commits, in the layout of its output batches. This is how a pull
    /// query reads an aggregation's table: from the state itself, without a second copy.
    pub fn snapshot(scopes: &[StateScope], name: &str, spec: AggregateSpec) -> Result<RecordBatch> {
        let this = Aggregate::new(spec, AggregateState::in_memory())?;
        let calls = &this.spec.calls;
        let owner = scopes.first().map_or("", |s| s.owner());
        let corrupt = |e: String| EngineError::Plan(format!("reading {owner}'s state: {e}"));
        let mut rows = Vec::new();
        let size = this.spec.window.and_then(|w| w.size());
        let mut emit = |group: &[u8], g: &Group, window: Option<(i64, i64)>| -> Result<()> {
            rows.push(Emit {
                group: GroupVals::Values(decode_row(&this.group_types, group).map_err(corrupt)?),
                results: this.results(&g.accs)?,
                window,
                ts: g.ts,
                tombstone: false,
            });
            Ok(())
        };
        for scope in scopes {
            let store = |suffix: &str| {
                let name = scope.store_name(&format!("{name}-{suffix}"));
                scope.db().store(&name)
            };
            for (k, v) in store("groups")?.scan_prefix(&[])? {
                let g = decode_group(calls, &v).map_err(corrupt)?;
                match size {
                    Some(size) if k.len() >= 8 => {
                        let (start, group) = k.split_at(8);
                        let start = sortable_time(start);
                        emit(group, &g, Some((start, start + size)))?;
                    }
                    _ => emit(&k, &g, None)?,
                }
            }
            for (k, v) in store("sessions")?.scan_prefix(&[])? {
                for s in decode_sessions(calls, &v).map_err(corrupt)? {
                    emit(&k, &s.group, Some((s.start, s.end)))?;
                }
            }
        }
        let headers = no_headers(rows.len());
        this.build(rows, None, &headers)
    }
}

impl Operator for Aggregate {
    fn describe(&self) -> String {
        let calls: Vec<String> = self
            .spec
            .calls
            .iter()
            .map(|c| format!("{:?}(#{})", c.func, c.arg))
            .collect();
        let window = match &self.spec.window {
            Some(w) => format!(" window {:?} grace {}ms", w.kind, w.grace_ms),
            None => String::new(),
        };
        format!(
            "Aggregate: group by {} columns, {}{}{}",
            self.spec.group_fields.len(),
            calls.join(", "),
            window,
            if self.spec.table_key.is_some() {
                " (over a table)"
            } else {
                ""
            }
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let ng = self.spec.group_fields.len();
        let rowtime = batch
            .column(self.spec.rowtime)
            .as_primitive::<Int64Type>()
            .clone();
        let null_value = batch.column(self.spec.null_value).as_boolean().clone();
        let mut out = Vec::with_capacity(batch.num_rows());
        // The input row each output row came from (None: a window closing).
        let mut origins: Vec<Option<usize>> = Vec::with_capacity(batch.num_rows());
        let mut group_key = Vec::new();
        let changes = self.spec.changes.clone();
        for row in 0..batch.num_rows() {
            let ts = rowtime.value(row);
            self.stream_time = self.stream_time.max(ts);
            // A row whose grouping values include a null has no group: ksqlDB drops it.
            let has_group = (0..ng).all(|i| batch.column(i).is_valid(row));
            let result = match &self.spec.table_key {
                _ if let Some(changes) = &changes => {
                    self.process_change(changes, &batch, row, ts, &mut out)
                }
                Some(key_cols) => {
                    let cell = |i: usize| ScalarValue::try_from_array(batch.column(i), row);
                    let key = key_cols
                        .iter()
                        .map(|&i| cell(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    let source_key = encode_row(&key).map_err(EngineError::Plan)?;
                    let new = if !null_value.value(row) && has_group {
                        Some(PrevRow {
                            group: (0..ng).map(cell).collect::<Result<_, _>>()?,
                            args: self
                                .spec
                                .calls
                                .iter()
                                .map(|c| cell(c.arg))
                                .collect::<Result<_, _>>()?,
                        })
                    } else {
                        None
                    };
                    self.process_table_row(source_key, new, ts, &mut out)
                }
                None if null_value.value(row) => Ok(()),
                None if !has_group => ctx.report_row(
                    &batch,
                    row,
                    "the GROUP BY expressions are null for this record, which was dropped",
                ),
                None => {
                    group_key.clear();
                    for i in 0..ng {
                        encode_at(batch.column(i), row, &mut group_key)
                            .map_err(EngineError::Plan)?;
                    }
                    let origin = RowOrigin {
                        ctx,
                        batch: &batch,
                        row,
                    };
                    self.process_row(&group_key, ts, &mut out, &origin)
                }
            };
            if let Err(e) = result {
                match e {
                    EngineError::Plan(message) => ctx.report_row(&batch, row, &message)?,
                    other => return Err(other),
                }
            }
            origins.resize(out.len(), Some(row));
            if self.spec.window.is_some_and(|w| w.emit_final) {
                self.close_windows(&mut out)?;
                origins.resize(out.len(), None);
            }
        }
        // Once per batch: a window expires long after it closed, so nothing in this batch
        // could still have reached it.
        self.expire_windows()?;
        let none = no_headers(1);
        let sources = [batch.column(self.spec.headers).as_ref(), none.as_ref()];
        let picks: Vec<(usize, usize)> = origins
            .iter()
            .map(|o| o.map_or((1, 0), |row| (0, row)))
            .collect();
        let headers = datafusion::arrow::compute::interleave(&sources, &picks)?;
        self.build(out, Some(&batch), &headers)
    }

    fn wants_commit(&self) -> bool {
        self.groups.is_full() || self.sessions.is_full() || self.table_rows.is_full()
    }

    fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        let calls = &self.spec.calls;
        let ts = self.stream_time.max(0);
        self.groups
            .checkpoint(commit, ts, |g| encode_group(calls, g))?;
        self.sessions
            .checkpoint(commit, ts, |s| encode_sessions(calls, s))?;
        self.table_rows
            .checkpoint(commit, ts, |r| encode_row(r.group.iter().chain(&r.args)))?;
        self.pending.checkpoint(commit)?;
        self.live.checkpoint(commit)?;
        if let (Some((_, owner, name)), true) = (&self.clock, self.stream_time >= 0) {
            commit.set_offset(owner, name, self.stream_time as u64);
        }
        Ok(())
    }
}
