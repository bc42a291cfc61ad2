//! Compaction: keeping only the latest record of each key in a compacted topic.
//!
//! The cleaner first maps each key to its latest offset across the partition (the active
//! segment included, so a key updated a moment ago still shadows its older values), then
//! rewrites each sealed segment that holds a shadowed record or an expired tombstone.
//!
//! Memory stays bounded whatever the number of keys, as Kafka's dedupe buffer keeps it: the map
//! holds 128-bit hashes of keys, not keys, and at most [`MAX_MAPPED_KEYS`] of them, mapped
//! newest segment first; a key it lacks keeps its records until a later pass. A rewrite streams
//! the records it keeps, a few thousand at a time. Records
//! keep their offsets, so consumers' positions stay valid; a segment may become empty but keeps
//! its place, so the start offset does not move.
//!
//! Records past the readable end (the last stable offset, see `transaction.rs`) take no part:
//! their transactions may yet abort, so they neither shadow older values nor have their segment
//! rewritten. Aborted transactions' records take no part either, and a rewrite drops them.
//!
//! A pass reads the whole partition, so it runs only once enough is new to pay for it: when at
//! least half the partition's offsets were appended since the last pass (Kafka's default
//! `min.cleanable.dirty.ratio`), or when `delete_retention_ms` has passed since it (tombstones
//! it kept may have expired). The first pass after opening always runs.
//!
//! A tombstone is kept while it is the latest record of its key and until `delete_retention_ms`
//! has passed since its segment was last written, long enough for consumers to see the delete.
//! A rewritten segment keeps its original modification time for this reason.
//!
//! Rewriting happens beside the live segment (in `.cleaning/`) without any lock. The swap, under
//! the appender lock, removes the old index files, renames the new log over the old one
//! (atomic), then moves the new indexes in: a crash at any point leaves either segment whole,
//! and any missing index is rebuilt on open. Readers still holding the old segment keep reading
//! its unlinked file.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hashbrown::HashMap;

use crate::batch::{self, BatchFormat, Codec};
use crate::error::{IoContext, LogError, Result};
use crate::partition::{sync_dir, Partition};
use crate::record::StoredRecord;
use crate::segment::{file_name, Segment};
use crate::transaction::{is_aborted, Aborted};

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
}

impl Partition {
    /// Compacts the sealed segments at wall-clock time `now`. Does nothing for topics that are
    /// not compacted.
    pub fn compact(&self, now: SystemTime) -> Result<CompactionStats> {
        let mut stats = CompactionStats::default();
        if !self.config().compact {
            return Ok(stats);
        }
        let segments = self.segments.read().clone();
        if segments.len() < 2 {
            return Ok(stats);
        }
        let end = self.end_offset();
        let tombstone_age = Duration::from_millis(self.config().delete_retention_ms);
        if let Some((reached, at)) = *self.compacted.lock() {
            let start = self.start_offset();
            let dirty = end.saturating_sub(reached.max(start));
            if dirty * 2 < end - start && now < at + tombstone_age {
                return Ok(stats);
            }
        }
        let aborted = self.aborted.read().clone();
        let latest = latest_offsets(&segments, end, &aborted)?;
        for (seg, next) in segments.iter().zip(&segments[1..]) {
            if next.base_offset > end {
                break;
            }
            let tombstones_expire = seg.modified()? + tombstone_age <= now;
            let keep = |r: &StoredRecord| {
                // A record is shadowed when its key has a later offset. A key the map lacks
                // (past its bound) is kept this pass: keeping is always safe.
                let shadowed = r
                    .record
                    .key
                    .as_ref()
                    .and_then(|k| latest.get(&key_hash(k)))
                    .is_some_and(|&last| last > r.offset);
                let expired_tombstone = r.record.value.is_none() && tombstones_expire;
                !shadowed && !expired_tombstone
            };
            // Counted first, so that a segment with nothing to drop is not rewritten; the
            // rewrite then streams, holding a few thousand records at a time.
            let (mut total, mut kept) = (0u64, 0u64);
            for_each_record(seg, &aborted, |r| {
                total += 1;
                kept += u64::from(keep(&r));
            })?;
            if kept == total {
                continue;
            }
            if self.replace_segment(seg, &aborted, &keep)? {
                stats.segments_rewritten += 1;
                stats.records_removed += total - kept;
            }
        }
        *self.compacted.lock() = Some((end, now));
        Ok(stats)
    }

    /// Writes the records of `old` that `keep` keeps as its new content and swaps it in.
    /// Returns false if `old` is no longer part of the partition (retention removed it
    /// meanwhile).
    fn replace_segment(
        &self,
        old: &Arc<Segment>,
        aborted: &[Aborted],
        keep: &dyn Fn(&StoredRecord) -> bool,
    ) -> Result<bool> {
        let base = old.base_offset;
        let work = self.dir.join(format!(".cleaning-{base}"));
        if work.exists() {
            std::fs::remove_dir_all(&work).at(&work)?;
        }
        std::fs::create_dir(&work).at(&work)?;
        let interval = self.config().index_interval_bytes;
        let fresh = Segment::create(self.id.clone(), &work, base, interval)?;
        // Records of several batches merge here; their producers' codecs are not kept.
        let format = BatchFormat {
            codec: Codec::None,
            log_append_time: self.config().log_append_time,
        };
        let mut buf = Vec::new();
        let mut pending: Vec<StoredRecord> = Vec::with_capacity(REWRITE_CHUNK);
        let mut written = Ok(());
        let mut write = |pending: &mut Vec<StoredRecord>| -> Result<()> {
            buf.clear();
            if let Some(meta) = batch::encode(
                &mut buf,
                None,
                format,
                0,
                pending.iter().map(|r| (r.offset, &r.record)),
            ) {
                fresh.append(&buf, &[meta])?;
            }
            pending.clear();
            Ok(())
        };
        for_each_record(old, aborted, |r| {
            if written.is_ok() && keep(&r) {
                pending.push(r);
                if pending.len() == REWRITE_CHUNK {
                    written = write(&mut pending);
                }
            }
        })?;
        written?;
        write(&mut pending)?;
        fresh.seal()?;
        let mtime = old.modified()?;
        std::fs::File::options()
            .write(true)
            .open(fresh.path())
            .and_then(|f| f.set_modified(mtime))
            .at(fresh.path())?;
        drop(fresh);

        let _app = self.appender.lock();
        let current = self.segments.read().clone();
        let Some(i) = current.iter().position(|s| Arc::ptr_eq(s, old)) else {
            std::fs::remove_dir_all(&work).at(&work)?;
            return Ok(false);
        };
        let next_offset = current
            .get(i + 1)
            .map(|s| s.base_offset)
            .expect("only sealed segments are compacted");
        for ext in ["index", "timeindex"] {
            let p = self.dir.join(file_name(base, ext));
            std::fs::remove_file(&p).at(&p)?;
        }
        for ext in ["log", "index", "timeindex"] {
            let (from, to) = (
                work.join(file_name(base, ext)),
                self.dir.join(file_name(base, ext)),
            );
            std::fs::rename(&from, &to).at(&to)?;
        }
        sync_dir(&self.dir)?;
        std::fs::remove_dir(&work).at(&work)?;
        let replacement =
            Segment::open_sealed(self.id.clone(), &self.dir, base, next_offset, interval)?;
        let mut list = Vec::clone(&current);
        list[i] = Arc::new(replacement);
        self.publish(list);
        Ok(true)
    }
}

/// Calls `f` with each record of `seg` but those of aborted transactions, which a pass drops.
fn for_each_record(
    seg: &Segment,
    aborted: &[Aborted],
    mut f: impl FnMut(StoredRecord),
) -> Result<()> {
    let mut err: Option<LogError> = None;
    let mut records = Vec::new();
    seg.scan(0, seg.size(), |pos, meta, bytes| {
        if is_aborted(aborted, &meta) {
            return ControlFlow::Continue(());
        }
        records.clear();
        if let Err(e) = batch::decode_into(bytes, &meta, 0, &mut records) {
            err = Some(seg.corrupt(pos, bytes, e));
            return ControlFlow::Break(());
        }
        records.drain(..).for_each(&mut f);
        ControlFlow::Continue(())
    })?;
    err.map_or(Ok(()), Err)
}

/// Records written per batch of a rewritten segment, and held in memory at once.
const REWRITE_CHUNK: usize = 4096;

/// The most keys a pass maps (about 40 bytes each: some 160 MB), Kafka's
/// `log.cleaner.dedupe.buffer.size` in spirit: a pass over a partition with more keys maps the
/// newest ones, and keeps the older records of the rest until a later pass.
const MAX_MAPPED_KEYS: usize = 4 << 20;

/// A key's 128-bit hash: the map holds these instead of the keys, so its memory does not grow
/// with their length. Two keys sharing one would make the older's records look shadowed; at
/// 128 bits that needs some 2^64 keys.
fn key_hash(key: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(key)
}

/// The latest offset of each key below `end` (readable and decided), by key hash. Segments are
/// read newest first, so that when the map is full it holds the newest keys, whose older
/// records are the most likely to be shadowed. The active segment takes part: a key updated
/// a moment ago still shadows its older values.
fn latest_offsets(
    segments: &[Arc<Segment>],
    end: u64,
    aborted: &[Aborted],
) -> Result<HashMap<u128, u64>> {
    let mut latest: HashMap<u128, u64> = HashMap::new();
    for seg in segments.iter().rev() {
        for_each_record(seg, aborted, |r| {
            let Some(k) = &r.record.key else { return };
            if r.offset >= end {
                return;
            }
            let full = latest.len() >= MAX_MAPPED_KEYS;
            match latest.entry(key_hash(k)) {
                hashbrown::hash_map::Entry::Occupied(mut e) => {
                    if *e.get() < r.offset {
                        e.insert(r.offset);
                    }
                }
                hashbrown::hash_map::Entry::Vacant(e) if !full => {
                    e.insert(r.offset);
                }
                hashbrown::hash_map::Entry::Vacant(_) => {}
            }
        })?;
        if latest.len() >= MAX_MAPPED_KEYS {
            break;
        }
    }
    Ok(latest)
}
