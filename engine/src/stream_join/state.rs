//! The state both sides of a stream-stream join share: the buffers, the records waiting for
//! their window to close, and the times that decide both (see the parent module).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
// foldhash, not SipHash: the read-ahead map is probed once per lookup.
use datafusion::common::ScalarValue;
use hashbrown::HashMap;

use super::key_filter::KeyFilter;
use super::{JoinSide, JoinWindows};
use crate::error::{EngineError, Result};
use crate::staged_store::StagedStore;
use crate::state_codec::decode_row;
use crate::table_join::Keep;

/// The stores a stream-stream join keeps.
pub struct JoinStores {
    pub left: StagedStore,
    pub right: StagedStore,
    /// Unmatched records of outer sides waiting for their window to close.
    pub waiting: StagedStore,
}
/// Where the buffers' times and the stream time are kept (above every buffer key, whose first
/// byte is a segment number's high byte, at most 0x7f).
const META_KEY: &[u8] = &[0xff];

/// The state both sides of a stream-stream join share.
pub struct StreamJoinState {
    pub(super) windows: JoinWindows,
    pub(super) keep: Keep,
    pub(super) primary: JoinSide,
    pub(super) buffers: [StagedStore; 2],
    pub(super) waiting: Option<StagedStore>,
    /// The largest time put into each buffer (`i64::MIN`: none yet).
    pub(super) observed: [i64; 2],
    pub(super) stream_time: i64,
    /// A lower bound of the waiting records' times (`None`: unknown, until the first look;
    /// `i64::MAX`: none wait), to skip looking at them while none can have closed.
    pub(super) min_waiting: Option<i64>,
    pub(super) segment_ms: i64,
    pub(super) key_types: Vec<DataType>,
    /// Each side's buffered row: its pseudo-columns, then its buffered columns.
    pub(super) row_types: [Vec<DataType>; 2],
    pub(super) meta_changed: bool,
    /// Each buffer's stored records for the lookups of the batch being processed, read ahead
    /// with one iterator (see [`StreamJoinState::read_ahead`]); emptied after the batch.
    ahead: [HashMap<Vec<u8>, ReadAhead>; 2],
    /// Which keys each buffer's segments may hold, to skip reads that would find nothing.
    filters: [KeyFilter; 2],
}

/// How many key fingerprints each side's [`KeyFilter`] holds at most: 7/8 of 2^21, the load
/// at which hashbrown's table of 2^21 slots (13 bytes each) grows, so about 26 MiB a side.
const FILTER_KEYS: usize = 7 << 18;

/// A buffer's stored records of one key in one segment, from `start` to `end`.
struct ReadAhead {
    start: Vec<u8>,
    end: Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A joined (or null-padded) row, before it becomes part of a batch.
///
/// What the record being processed contributes (its key, its own side's row, its headers) is
/// not copied out of its batch: the output batch takes those columns from the input rows a
/// batch at a time.
pub(super) struct Joined {
    pub(super) rowtime: i64,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// The input row being processed; `None` for rows a closing window emits, which carry no
    /// headers (Kafka Streams forwards the processed record's headers).
    pub(super) input_row: Option<usize>,
    /// The join key, when it does not come from `input_row` (a waiting record's).
    pub(super) key: Option<Vec<ScalarValue>>,
    /// Each side's row (pseudo-columns, then buffered columns), if it has one.
    pub(super) sides: [SideRow; 2],
}

/// One side's part of a joined row.
pub(super) enum SideRow {
    /// Null-padded: the side has no record in this row.
    Absent,
    /// The record being processed, in the input batch (`Joined::input_row`).
    Input,
    /// A buffered record: pseudo-columns, then buffered columns.
    Values(Vec<ScalarValue>),
}

/// A buffered record found by a lookup.
pub(super) struct Buffered {
    pub(super) time: i64,
    pub(super) partition: u32,
    pub(super) offset: u64,
    pub(super) row: Vec<ScalarValue>,
}

/// The time buckets of the [`KeyFilter`]s: a quarter of the window, so that a key's records
/// well outside a lookup's range do not make it read; but no more than 4096 buckets over the
/// retention (a day by default), whose bookkeeping would outweigh them.
fn filter_bucket_ms(windows: &JoinWindows) -> i64 {
    ((windows.before_ms + windows.after_ms) / 4).max(windows.retention() / 4096)
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
            // Segments long next to the window, so that most lookups stay in one segment (one
            // seek); expired segments go once stream time is a segment past their end.
            segment_ms: (windows.retention() / 2)
                .max(4 * (windows.before_ms + windows.after_ms))
                .max(60_000),
            key_types,
            row_types,
            meta_changed: false,
            ahead: [HashMap::new(), HashMap::new()],
            filters: [
                KeyFilter::new(filter_bucket_ms(&windows), None, FILTER_KEYS),
                KeyFilter::new(filter_bucket_ms(&windows), None, FILTER_KEYS),
            ],
        };
        if let Some(meta) = state.buffers[0].get(META_KEY)? {
            if meta.len() != 24 {
                return Err(corrupt(state.buffers[0].name(), "bad join times".into()));
            }
            let at = |i: usize| read_u64(&meta, i * 8) as i64;
            state.observed = [at(0), at(1)];
            state.stream_time = at(2);
        }
        // What was buffered before this start is at or before each buffer's observed time.
        for i in 0..2 {
            if state.observed[i] != i64::MIN {
                let bucket_ms = filter_bucket_ms(&state.windows);
                state.filters[i] = KeyFilter::new(bucket_ms, Some(state.observed[i]), FILTER_KEYS);
            }
        }
        Ok(Arc::new(Mutex::new(state)))
    }

    /// The window seen from `side`: how far back and ahead its records look.
    pub(super) fn bounds(&self, side: JoinSide) -> (i64, i64) {
        if side == self.primary {
            (self.windows.before_ms, self.windows.after_ms)
        } else {
            (self.windows.after_ms, self.windows.before_ms)
        }
    }

    pub(super) fn is_outer(&self, side: JoinSide) -> bool {
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

    pub(super) fn waiting_key(
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
    pub(super) fn buffer(
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
        self.filters[i].stage(key, time);
        if live_from > 0 {
            let segment = self.segment(live_from);
            self.buffers[i].delete_below(&segment.to_be_bytes());
            self.filters[i].forget_before(live_from);
        }
    }

    /// The start of a buffer's keys of `key` in `segment`.
    fn segment_prefix(segment: u64, key: &[u8]) -> Vec<u8> {
        let mut prefix = segment.to_be_bytes().to_vec();
        prefix.extend_from_slice(&(key.len() as u32).to_be_bytes());
        prefix.extend_from_slice(key);
        prefix
    }

    /// The range of buffer keys of `key` in `segment` from time `from` to `to`, inclusive.
    fn time_range(segment: u64, key: &[u8], from: i64, to: i64) -> (Vec<u8>, Vec<u8>) {
        let (mut start, mut end) = (Vec::new(), Vec::new());
        Self::time_range_into(segment, key, from, to, &mut start, &mut end);
        (start, end)
    }

    /// [`StreamJoinState::time_range`] into `start` and `end`, replacing what they held; the
    /// segment's prefix is `start` but its last 8 bytes.
    fn time_range_into(
        segment: u64,
        key: &[u8],
        from: i64,
        to: i64,
        start: &mut Vec<u8>,
        end: &mut Vec<u8>,
    ) {
        start.clear();
        start.extend_from_slice(&segment.to_be_bytes());
        start.extend_from_slice(&(key.len() as u32).to_be_bytes());
        start.extend_from_slice(key);
        end.clear();
        end.extend_from_slice(start);
        start.extend_from_slice(&time_bytes(from));
        end.extend_from_slice(&((to as u64) + 1).to_be_bytes());
    }

    /// Reads ahead, with one RocksDB iterator for the whole batch, the stored records of
    /// `side`'s buffer that lookups of these keys at these times may find: a batch's lookups
    /// then cost a seek each instead of an iterator each. RocksDB does not change until the
    /// batch commits; the batch's own writes are merged at each lookup, as always.
    ///
    /// Returns, per lookup, whether RocksDB may hold what it reads ([`KeyFilter`]'s answer,
    /// which stays good until the commit): for [`StreamJoinState::lookup`], which would
    /// otherwise ask the filter again.
    pub(super) fn read_ahead<'k>(
        &mut self,
        side: JoinSide,
        lookups: impl Iterator<Item = (&'k [u8], i64)>,
    ) -> Result<Vec<bool>> {
        let (before, after) = self.bounds(side.other());
        // Per key and segment, the widest time span asked for.
        let mut wanted: BTreeMap<(u64, &[u8]), (i64, i64)> = BTreeMap::new();
        let mut stored = Vec::new();
        for (key, time) in lookups {
            let from = time.saturating_sub(before).max(0);
            let to = time.saturating_add(after).max(0);
            let may_be = self.filters[side.index()].may_be_stored(key, from, to);
            stored.push(may_be);
            if !may_be {
                continue;
            }
            for segment in self.segment(from)..=self.segment(to) {
                let span = wanted.entry((segment, key)).or_insert((from, to));
                *span = (span.0.min(from), span.1.max(to));
            }
        }
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = wanted
            .iter()
            .map(|(&(segment, key), &(from, to))| Self::time_range(segment, key, from, to))
            .collect();
        let found = self.buffers[side.index()].read_ahead(&ranges)?;
        self.ahead[side.index()] = wanted
            .into_keys()
            .zip(ranges.into_iter().zip(found))
            .map(|((segment, key), ((start, end), entries))| {
                let ahead = ReadAhead {
                    start,
                    end,
                    entries,
                };
                (Self::segment_prefix(segment, key), ahead)
            })
            .collect();
        Ok(stored)
    }

    /// Forgets what [`StreamJoinState::read_ahead`] read: it is only good until the commit.
    pub(super) fn forget_read_ahead(&mut self) {
        self.ahead = [HashMap::new(), HashMap::new()];
    }

    /// The records of `side`'s buffer with key `key` that a record of the other side at `time`
    /// joins, in time order. `stored`: whether RocksDB may hold any, as
    /// [`StreamJoinState::read_ahead`] found for this lookup.
    pub(super) fn lookup(
        &self,
        side: JoinSide,
        key: &[u8],
        time: i64,
        stored: bool,
    ) -> Result<Vec<Buffered>> {
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
        let (mut start, mut end) = (Vec::new(), Vec::new());
        for segment in self.segment(from)..=self.segment(to) {
            Self::time_range_into(segment, key, from, to, &mut start, &mut end);
            let prefix = &start[..start.len() - 8];
            let ahead = self.ahead[side.index()]
                .get(prefix)
                .filter(|a| a.start <= start && a.end >= end);
            let entries = match ahead {
                Some(a) => buffer.range_from(&a.entries, &start, &end),
                // Only what was buffered since the last commit.
                None if !stored => buffer.range_from(&[], &start, &end),
                None => buffer.range(&start, Some(&end))?,
            };
            for (k, v) in entries {
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
    pub(super) fn emit_closed(&mut self, side: JoinSide, out: &mut Vec<Joined>) -> Result<()> {
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
        // `i64::MAX`: known to be empty.
        self.min_waiting = Some(i64::MAX);
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
            let mut sides = [SideRow::Absent, SideRow::Absent];
            sides[side.index()] = SideRow::Values(row);
            out.push(Joined {
                rowtime: time,
                partition: read_u32(&k, at) as i32,
                offset: read_u64(&k, at + 4) as i64,
                input_row: None,
                key: Some(key),
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

    pub(super) fn checkpoint(&mut self, commit: &mut eddy_state::Commit) -> Result<()> {
        if self.meta_changed {
            let mut meta = Vec::with_capacity(24);
            for t in [self.observed[0], self.observed[1], self.stream_time] {
                meta.extend_from_slice(&(t as u64).to_be_bytes());
            }
            self.buffers[0].put(META_KEY.to_vec(), meta);
            self.meta_changed = false;
        }
        // A buffer's changelog records carry the stream time of their commit, never earlier
        // than the records they hold: once that is before the buffer's expiry bound, which it
        // deletes by range (unlogged), the records are all expired and the changelog sheds
        // them, as Kafka Streams' window changelogs do by retention.
        let time = self.stream_time.max(0);
        let bounds = self.observed.map(|observed| {
            let live_from = observed.saturating_sub(self.windows.retention());
            (live_from > 0).then(|| self.segment(live_from) as i64 * self.segment_ms)
        });
        for (b, bound) in self.buffers.iter_mut().zip(bounds) {
            b.checkpoint(commit, time)?;
            if let Some(bound) = bound {
                b.expire_changelog_before(bound)?;
            }
        }
        if let Some(w) = &mut self.waiting {
            w.checkpoint(commit, time)?;
        }
        for f in &mut self.filters {
            f.commit_staged();
        }
        Ok(())
    }
}
