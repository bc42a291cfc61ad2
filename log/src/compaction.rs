//! Compaction: keeping only the latest record of each key in a compacted topic.
//!
//! The cleaner first maps every key to its latest offset across the whole partition (the
//! active segment included, so a key updated a moment ago still shadows its older values), then
//! rewrites each sealed segment that holds a shadowed record or an expired tombstone. Records
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

use bytes::Bytes;
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
        // Sized for the partition up front (up to a bound), so that the pass does not rehash
        // a map of millions of keys again and again as it grows. hashbrown's default hasher
        // (foldhash, seeded per process) is several times faster than SipHash on short keys.
        let mut latest: HashMap<Bytes, u64> =
            HashMap::with_capacity(end.saturating_sub(self.start_offset()).min(1 << 20) as usize);
        let aborted = self.aborted.read().clone();
        for seg in segments.iter() {
            for_each_record(seg, &aborted, |r| {
                if r.offset >= end {
                    return;
                }
                if let Some(k) = &r.record.key {
                    // Copied: a slice would pin the whole read buffer it came from.
                    latest.insert(Bytes::copy_from_slice(k), r.offset);
                }
            })?;
        }
        for (seg, next) in segments.iter().zip(&segments[1..]) {
            if next.base_offset > end {
                break;
            }
            let tombstones_expire = seg.modified()? + tombstone_age <= now;
            let mut kept = Vec::new();
            let mut total = 0u64;
            for_each_record(seg, &aborted, |r| {
                total += 1;
                let is_latest =
                    r.record.key.as_ref().and_then(|k| latest.get(k)) == Some(&r.offset);
                let expired_tombstone = r.record.value.is_none() && tombstones_expire;
                if is_latest && !expired_tombstone {
                    kept.push(r);
                }
            })?;
            if kept.len() as u64 == total {
                continue;
            }
            if self.replace_segment(seg, &kept)? {
                stats.segments_rewritten += 1;
                stats.records_removed += total - kept.len() as u64;
            }
        }
        *self.compacted.lock() = Some((end, now));
        Ok(stats)
    }

    /// Writes `kept` as the new content of `old` and swaps it in. Returns false if `old` is no
    /// longer part of the partition (retention removed it meanwhile).
    fn replace_segment(&self, old: &Arc<Segment>, kept: &[StoredRecord]) -> Result<bool> {
        let base = old.base_offset;
        let work = self.dir.join(format!(".cleaning-{base}"));
        if work.exists() {
            std::fs::remove_dir_all(&work).at(&work)?;
        }
        std::fs::create_dir(&work).at(&work)?;
        let interval = self.config().index_interval_bytes;
        let fresh = Segment::create(self.id.clone(), &work, base, interval)?;
        let mut buf = Vec::new();
        for chunk in kept.chunks(4096) {
            buf.clear();
            // Records of several batches merge here; their producers' codecs are not kept.
            let format = BatchFormat {
                codec: Codec::None,
                log_append_time: self.config().log_append_time,
            };
            let meta = batch::encode(
                &mut buf,
                None,
                format,
                0,
                chunk.iter().map(|r| (r.offset, &r.record)),
            )
            .expect("chunk is not empty");
            fresh.append(&buf, &[meta])?;
        }
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
