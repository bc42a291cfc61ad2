//! A segment: one file of batches covering a contiguous range of offsets, with its two indexes.
//!
//! A partition's log is a sequence of segments named after their base offset
//! (`00000000000000000042.log`, `.index`, `.timeindex`). Only the last one, the active segment,
//! is written to; the others are sealed and change only when compaction replaces them whole.
//!
//! Writes are positional (`pwrite`) at the end of the file by the one appender that holds the
//! partition's lock; reads are positional too and take no lock, bounded by `size`, which is only
//! advanced after a write has completed, so a reader never sees half a batch.

use std::fs::{File, OpenOptions};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use crate::batch::{self, BatchError, BatchMeta, StoredBatch, HEADER_LEN};
use crate::damage::{self, Damage};
use crate::error::{IoContext, LogError, Result};
use crate::index_file::IndexFile;
use crate::offset_index::OffsetEntry;
use crate::record::StoredRecord;
use crate::time_index::TimeEntry;

/// Which partition a segment belongs to, for error messages.
#[derive(Debug)]
pub(crate) struct PartitionId {
    pub topic: String,
    pub partition: u32,
}

/// How much a reader pulls from the file at once when it has no better idea.
pub(crate) const READ_CHUNK: usize = 256 << 10;

pub(crate) struct Segment {
    pub base_offset: u64,
    pub(crate) id: Arc<PartitionId>,
    log_path: PathBuf,
    file: File,
    /// Bytes of whole batches in the file; readers never look past it.
    size: AtomicU64,
    /// One past the last offset stored here (for a sealed segment: the next segment's base).
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    created: Instant,
    indexes: RwLock<Indexes>,
}

struct Indexes {
    offsets: IndexFile<OffsetEntry>,
    times: IndexFile<TimeEntry>,
    interval: u64,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    /// Relative offset of the batch that holds `max_timestamp`, for the sealing entry.
    max_ts_relative_offset: u32,
}

pub fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// What recovery found at the end of the last segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub at_position: u64,
    pub bytes_dropped: u64,
}

impl Segment {
    fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, "log")),
            dir.join(file_name(base, "index")),
            dir.join(file_name(base, "timeindex")),
        )
    }

    fn open_file(path: &Path, create: bool) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(path)
            .at(path)
    }

    fn new(
        id: Arc<PartitionId>,
        base_offset: u64,
        log_path: PathBuf,
        file: File,
        indexes: Indexes,
    ) -> Segment {
        Segment {
            base_offset,
            id,
            log_path,
            file,
            size: AtomicU64::new(0),
            next_offset: AtomicU64::new(base_offset),
            max_timestamp: AtomicI64::new(i64::MIN),
            created: Instant::now(),
            indexes: RwLock::new(indexes),
        }
    }

    /// Creates a new, empty segment. The caller fsyncs the directory.
    pub fn create(id: Arc<PartitionId>, dir: &Path, base: u64, interval: u64) -> Result<Segment> {
        let (log, index, time) = Self::paths(dir, base);
        let file = Self::open_file(&log, true)?;
        let indexes = Indexes::fresh(index, time, interval).inspect_err(|_| {
            // Not left half made: a second attempt creates the file again.
            let _ = std::fs::remove_file(&log);
        })?;
        Ok(Segment::new(id, base, log, file, indexes))
    }

    /// Opens the last segment of a partition, validating every batch and rebuilding its
    /// indexes. A bad batch at or past `recovery_point` is a torn tail that was never
    /// acknowledged: the file is cut there. One below it is damage (`damage.rs`): it is kept,
    /// reported, and the scan goes on at the next batch that verifies.
    pub fn recover(
        id: Arc<PartitionId>,
        dir: &Path,
        base: u64,
        interval: u64,
        recovery_point: u64,
    ) -> Result<(Segment, Option<Truncation>, Vec<Damage>)> {
        let (log, index, time) = Self::paths(dir, base);
        let file = Self::open_file(&log, false)?;
        let len = file.metadata().at(&log)?.len();
        let seg = Segment::new(id, base, log, file, Indexes::fresh(index, time, interval)?);
        let mut expected_pos = 0;
        let walk = damage::walk(
            &seg,
            len,
            recovery_point,
            |offset| offset >= recovery_point,
            |pos, meta, _| {
                if pos != expected_pos {
                    // After damaged bytes: an index entry here lets reads of later offsets
                    // start past the damage instead of running into it.
                    seg.indexes.write().bytes_since_offset_entry = u64::MAX;
                }
                seg.index_batch(pos, meta);
                expected_pos = pos + meta.total_len() as u64;
                Ok(())
            },
        )?;
        if let Some(d) = walk.damage.last().filter(|d| d.bytes.end == len) {
            // The damage runs to the end of the file: appends go after it, with the offsets
            // after those that were acknowledged.
            seg.size.store(len, Ordering::Release);
            seg.next_offset.store(d.offsets.end, Ordering::Release);
            seg.indexes.write().bytes_since_offset_entry = u64::MAX;
        }
        let truncation = (walk.valid_end < len).then(|| Truncation {
            at_position: walk.valid_end,
            bytes_dropped: len - walk.valid_end,
        });
        if let Some(t) = truncation {
            tracing::warn!(
                topic = %seg.id.topic, partition = seg.id.partition,
                position = t.at_position, dropped = t.bytes_dropped,
                "truncating a torn tail of {} (past the recovery point, never acknowledged)",
                seg.log_path.display()
            );
            seg.file.set_len(walk.valid_end).at(&seg.log_path)?;
            seg.file.sync_all().at(&seg.log_path)?;
        }
        seg.indexes.write().flush()?;
        Ok((seg, truncation, walk.damage))
    }

    /// Opens a sealed segment from its index files, rebuilding them by a scan if they are
    /// missing or do not match the log. `next_offset` is the next segment's base offset.
    pub fn open_sealed(
        id: Arc<PartitionId>,
        dir: &Path,
        base: u64,
        next_offset: u64,
        interval: u64,
    ) -> Result<Segment> {
        let (log, index, time) = Self::paths(dir, base);
        let file = Self::open_file(&log, false)?;
        let len = file.metadata().at(&log)?.len();
        let loaded = match (
            IndexFile::<OffsetEntry>::load(index.clone())?,
            IndexFile::<TimeEntry>::load(time.clone())?,
        ) {
            (Some(o), Some(t)) => Some(Indexes::loaded(o, t, interval)),
            _ => None,
        };
        let mut seg;
        match loaded {
            Some(indexes) => {
                seg = Segment::new(id.clone(), base, log.clone(), file, indexes);
                seg.size.store(len, Ordering::Release);
                if !seg.indexes_match_log(len) {
                    let file = Self::open_file(&log, false)?;
                    let indexes = Indexes::fresh(index, time, interval)?;
                    seg = Segment::new(id, base, log, file, indexes);
                    seg.rebuild_indexes(len)?;
                }
            }
            None => {
                let indexes = Indexes::fresh(index, time, interval)?;
                seg = Segment::new(id, base, log, file, indexes);
                seg.rebuild_indexes(len)?;
            }
        }
        seg.size.store(len, Ordering::Release);
        seg.next_offset.store(next_offset, Ordering::Release);
        let max_ts = seg
            .indexes
            .read()
            .times
            .last()
            .map_or(i64::MIN, |e| e.max_timestamp);
        seg.max_timestamp.store(max_ts, Ordering::Release);
        Ok(seg)
    }

    /// A cheap check that the index files describe this log file: the last indexed position
    /// must hold a valid batch with the indexed base offset.
    fn indexes_match_log(&self, len: u64) -> bool {
        let idx = self.indexes.read();
        let Some(last) = idx.offsets.last().copied() else {
            return len == 0 && idx.times.entries().is_empty();
        };
        let mut ok = false;
        let _ = self.scan(u64::from(last.position), len, |_, meta, _| {
            ok = meta.base_offset == self.base_offset + u64::from(last.relative_offset);
            ControlFlow::Break(())
        });
        ok
    }

    fn rebuild_indexes(&self, len: u64) -> Result<()> {
        let _ = self.scan(0, len, |pos, meta, _| {
            self.index_batch(pos, &meta);
            ControlFlow::Continue(())
        });
        self.indexes
            .write()
            .seal(self.max_timestamp.load(Ordering::Acquire))
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    pub fn path(&self) -> &Path {
        &self.log_path
    }

    pub fn modified(&self) -> Result<SystemTime> {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .at(&self.log_path)
    }

    /// Appends encoded batches (one `pwrite`) and indexes them. Only the partition's appender
    /// calls this, holding the partition lock.
    pub fn append(&self, buf: &[u8], batches: &[BatchMeta]) -> Result<()> {
        let start = self.size();
        self.file.write_all_at(buf, start).at(&self.log_path)?;
        let mut pos = start;
        for meta in batches {
            self.index_batch(pos, meta);
            pos += meta.total_len() as u64;
        }
        // The batch is written and published: failing the append now would have it written
        // again. Its index entries stay pending, for the next flush or the seal (and a restart
        // rebuilds the active segment's indexes anyway).
        if let Err(e) = self.indexes.write().flush() {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Records a batch that is now whole in the file at `pos`, and publishes it to readers.
    fn index_batch(&self, pos: u64, meta: &BatchMeta) {
        {
            let mut idx = self.indexes.write();
            let relative = (meta.base_offset - self.base_offset) as u32;
            if idx.offsets.last().is_none() || idx.bytes_since_offset_entry >= idx.interval {
                idx.offsets.push(OffsetEntry {
                    relative_offset: relative,
                    position: pos as u32,
                });
                idx.bytes_since_offset_entry = 0;
            }
            idx.bytes_since_offset_entry += meta.total_len() as u64;
            if meta.max_ts > self.max_timestamp() {
                idx.max_ts_relative_offset = relative;
                if idx.times.last().is_none() || idx.bytes_since_time_entry >= idx.interval {
                    idx.times.push(TimeEntry {
                        max_timestamp: meta.max_ts,
                        relative_offset: relative,
                    });
                    idx.bytes_since_time_entry = 0;
                }
            }
            idx.bytes_since_time_entry += meta.total_len() as u64;
        }
        self.max_timestamp.fetch_max(meta.max_ts, Ordering::AcqRel);
        self.next_offset
            .store(meta.next_offset(), Ordering::Release);
        self.size
            .store(pos + meta.total_len() as u64, Ordering::Release);
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.log_path)
    }

    /// Makes the segment read-only: final time-index entry, indexes and log fsynced.
    pub fn seal(&self) -> Result<()> {
        self.indexes.write().seal(self.max_timestamp())?;
        self.sync()
    }

    /// Byte position to start reading at to find `offset`: a batch boundary at or before it.
    pub(crate) fn position_for(&self, offset: u64) -> u64 {
        let rel = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        let idx = self.indexes.read();
        idx.offsets
            .last_where(|e| e.relative_offset <= rel)
            .map_or(0, |i| u64::from(idx.offsets.entries()[i].position))
    }

    /// Calls `f` with each whole, verified batch from `start` up to `end` (bytes), reading the
    /// file in large chunks. Stops early when `f` breaks. A torn or corrupt batch ends the scan
    /// with an error carrying its position.
    pub fn scan(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, BatchMeta, &Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut pos = start;
        let mut want = READ_CHUNK;
        while pos < end {
            let len = (end - pos).min(want.max(READ_CHUNK) as u64) as usize;
            let chunk = self.read_at(pos, len)?;
            let mut at = 0usize;
            while at < chunk.len() {
                match batch::parse(&chunk[at..]) {
                    Ok(meta) => {
                        let total = meta.total_len();
                        let bytes = chunk.slice(at..at + total);
                        if f(pos + at as u64, meta, &bytes).is_break() {
                            return Ok(());
                        }
                        at += total;
                    }
                    Err(BatchError::Incomplete { needed })
                        if pos + (at as u64) + (needed.unwrap_or(HEADER_LEN) as u64) <= end =>
                    {
                        // The batch continues past this chunk: read again from its start.
                        want = needed.unwrap_or(HEADER_LEN);
                        break;
                    }
                    Err(e) => return Err(self.corrupt(pos + at as u64, &chunk[at..], e)),
                }
            }
            if at == 0 && want <= chunk.len() {
                // No progress although the chunk was as large as asked: cannot happen for a
                // valid file, guard against looping forever.
                return Err(self.corrupt(pos, &chunk, BatchError::Incomplete { needed: None }));
            }
            pos += at as u64;
            if at > 0 {
                want = READ_CHUNK;
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `pos` into a fresh buffer, without first zeroing it: reads are the
    /// hot path, and zeroing cost as much as the copy from the page cache.
    pub(crate) fn read_at(&self, pos: u64, len: usize) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(len);
        let mut done = 0usize;
        while done < len {
            let spare = buf.spare_capacity_mut();
            // SAFETY: pread writes at most `len - done` bytes into the spare capacity, which is
            // at least that large; no reference to uninitialized memory is formed.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    len - done,
                    (pos + done as u64) as libc::off_t,
                )
            };
            match n {
                n if n > 0 => {
                    // SAFETY: pread initialized the next `n` bytes.
                    unsafe { buf.set_len(done + n as usize) };
                    done += n as usize;
                }
                0 => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "segment file is shorter than its index says",
                    );
                    return Err(e).at(&self.log_path);
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e).at(&self.log_path);
                    }
                }
            }
        }
        Ok(buf.freeze())
    }

    /// The error for a bad batch at `position`. It names the offsets as well as a bad header
    /// allows; [`Partition::explain`](crate::Partition) finds the whole damaged range for
    /// readers.
    pub(crate) fn corrupt(&self, position: u64, bytes: &[u8], e: BatchError) -> LogError {
        let claimed = bytes
            .get(0..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .filter(|o| (self.base_offset..self.next_offset()).contains(o));
        let offsets = match claimed {
            Some(o) => o..o + 1,
            None => self.base_offset..self.next_offset(),
        };
        LogError::Corrupt {
            topic: self.id.topic.clone(),
            partition: self.id.partition,
            offsets,
            path: self.log_path.clone(),
            bytes: position..position + bytes.len().min(HEADER_LEN) as u64,
            reason: match e {
                BatchError::Corrupt(r) => r,
                BatchError::Incomplete { .. } => "batch is cut off".into(),
            },
        }
    }

    /// Reads records with offsets at or above `offset` into `out`, until `out` holds
    /// `max_records` or about `max_bytes` have been read (always at least one batch's worth).
    pub fn read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
        skip: &dyn Fn(&BatchMeta) -> bool,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        let start = self.position_for(offset);
        let mut bytes_read = 0usize;
        let mut result = Ok(());
        let before = out.len();
        let scanned = self.scan(start, self.size(), |pos, meta, bytes| {
            if meta.last_offset() < offset || skip(&meta) {
                return ControlFlow::Continue(());
            }
            if let Err(e) = batch::decode_into(bytes, &meta, offset, out) {
                result = Err(self.corrupt(pos, bytes, e));
                return ControlFlow::Break(());
            }
            bytes_read += meta.total_len();
            if out.len() >= max_records || bytes_read >= max_bytes {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        // Damage after the records read ends this read; the next one reports it.
        if out.len() == before {
            scanned?;
        }
        out.truncate(max_records.max(1));
        result
    }

    /// Reads whole batches, from the one holding `offset` on, until `max_bytes` (at least one
    /// batch) or the segment's end.
    pub fn read_batches(
        &self,
        offset: u64,
        max_bytes: usize,
        skip: &dyn Fn(&BatchMeta) -> bool,
        out: &mut Vec<StoredBatch>,
    ) -> Result<()> {
        let start = self.position_for(offset);
        let mut bytes_read = 0usize;
        let mut result = Ok(());
        let before = out.len();
        let scanned = self.scan(start, self.size(), |pos, meta, bytes| {
            if meta.last_offset() < offset || skip(&meta) {
                return ControlFlow::Continue(());
            }
            let mut records = Vec::with_capacity(meta.count as usize);
            if let Err(e) = batch::decode_into(bytes, &meta, 0, &mut records) {
                result = Err(self.corrupt(pos, bytes, e));
                return ControlFlow::Break(());
            }
            out.push(StoredBatch {
                base_offset: meta.base_offset,
                last_offset: meta.last_offset(),
                max_timestamp: meta.max_ts,
                format: meta.format,
                records,
            });
            bytes_read += meta.total_len();
            if bytes_read >= max_bytes {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if out.len() == before {
            scanned?;
        }
        result
    }

    /// The first offset in this segment whose record has a timestamp at or after `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let start_offset = {
            let idx = self.indexes.read();
            idx.times
                .last_where(|e| e.max_timestamp < ts)
                .map_or(self.base_offset, |i| {
                    self.base_offset + u64::from(idx.times.entries()[i].relative_offset)
                })
        };
        let start = self.position_for(start_offset);
        let mut found = None;
        let mut result = Ok(());
        self.scan(start, self.size(), |pos, meta, bytes| {
            if meta.max_ts < ts {
                return ControlFlow::Continue(());
            }
            match batch::decode(bytes, &meta) {
                Ok(records) => {
                    found = records
                        .iter()
                        .find(|r| r.record.timestamp >= ts)
                        .map(|r| r.offset);
                }
                Err(e) => result = Err(self.corrupt(pos, bytes, e)),
            }
            ControlFlow::Break(())
        })?;
        result.map(|()| found)
    }

    /// Cuts the file just before the batch that starts at `offset`, which must be a batch
    /// boundary. The caller reopens the segment (see [`Segment::recover`]) to rebuild its state.
    pub fn truncate_before(&self, offset: u64) -> Result<()> {
        let len = self.size();
        let mut cut = None;
        let mut inside = false;
        self.scan(self.position_for(offset), len, |pos, meta, _| {
            if meta.base_offset >= offset {
                cut = Some(pos);
                return ControlFlow::Break(());
            }
            if meta.base_offset + u64::from(meta.last_offset_delta) >= offset {
                inside = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        if inside {
            return Err(LogError::InvalidConfig(format!(
                "cannot truncate {} at offset {offset}: it is inside a batch",
                self.log_path.display()
            )));
        }
        let cut = cut.unwrap_or(len);
        self.file.set_len(cut).at(&self.log_path)?;
        self.file.sync_all().at(&self.log_path)?;
        Ok(())
    }

    /// Deletes the segment's files. Readers that still hold it keep reading the open file.
    pub fn delete_files(&self) -> Result<()> {
        let dir = self.log_path.parent().expect("segment in a directory");
        let (log, index, time) = Self::paths(dir, self.base_offset);
        for p in [log, index, time] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&p),
            }
        }
        Ok(())
    }
}

impl Indexes {
    fn fresh(index: PathBuf, time: PathBuf, interval: u64) -> Result<Indexes> {
        Ok(Indexes::loaded(
            IndexFile::create(index)?,
            IndexFile::create(time)?,
            interval,
        ))
    }

    fn loaded(
        offsets: IndexFile<OffsetEntry>,
        times: IndexFile<TimeEntry>,
        interval: u64,
    ) -> Indexes {
        Indexes {
            offsets,
            times,
            interval: interval.max(1),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_ts_relative_offset: 0,
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.offsets.flush()?;
        self.times.flush()
    }

    fn seal(&mut self, max_timestamp: i64) -> Result<()> {
        if self
            .times
            .last()
            .is_some_and(|e| e.max_timestamp < max_timestamp)
        {
            self.times.push(TimeEntry {
                max_timestamp,
                relative_offset: self.max_ts_relative_offset,
            });
        }
        self.offsets.seal()?;
        self.times.seal()
    }
}
