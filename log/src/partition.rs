//! A partition: an ordered, append-only sequence of records split into segments.
//!
//! # Concurrency
//! One appender at a time holds the partition's lock, encodes records into batches, writes them
//! to the active segment and then advances the end offset, which wakes readers. Readers take a
//! snapshot of the segment list (an `Arc<Vec<_>>` swapped whole on every change) and read without
//! the lock, so appends, reads, retention and compaction never wait for one another's I/O.
//!
//! # Offsets
//! Offsets in `start..end` are readable; offsets below `durable` are acknowledged: fsynced, or
//! accepted without fsync under the `never` policy. A reader can see a record before it is
//! acknowledged, as a Kafka consumer of a single broker can. Compaction can leave gaps: a read
//! returns the next surviving offset at or after the one asked for.
//!
//! # Transactions
//! An exactly-once writer (a stateful query's task) appends its output inside a transaction
//! (`transaction.rs`), as Kafka's do: written to the segment among everyone else's records,
//! but readable only below `end`, the last stable offset (the first offset of any transaction
//! still open), and skipped by readers if it aborts. So no reader ever sees output that
//! recovery may take back, as a Kafka `read_committed` consumer sees only committed
//! transactions. `start <= end <= written` and `durable <= written`, where the appender's
//! `written` offset is where the next record goes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::batch;
use crate::config::{FsyncPolicy, TopicConfig};
use crate::damage::Damage;
use crate::error::{IoContext, LogError, Result};
use crate::offset_watch::{Activity, OffsetWatch};
use crate::record::StoredRecord;
use crate::recovery_point::RecoveryPoint;
use crate::segment::{self, PartitionId, Segment, Truncation};
use crate::transaction::{is_aborted, Aborted, TxnState};

/// The largest record a partition accepts.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Offsets an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Number of records appended; they have offsets `base_offset..base_offset + count`.
    pub count: u64,
    /// The timestamp every record got, in a topic with log-append time.
    pub log_append_time: Option<i64>,
}

impl AppendInfo {
    /// One past the last offset appended.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + self.count
    }
}

/// What a read found, and where the next read starts.
#[derive(Debug)]
pub struct Read {
    pub records: Vec<StoredRecord>,
    pub next: u64,
}

/// Bounds on one read. A read returns at least one record if any is available, even when that
/// record alone is larger than `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_records: 10_000,
            max_bytes: 4 << 20,
        }
    }
}

pub struct Partition {
    pub(crate) id: Arc<PartitionId>,
    pub(crate) dir: PathBuf,
    /// The topic's settings, which may change while the partition is open
    /// ([`crate::Log::alter_topic_config`]); readers take a snapshot.
    pub(crate) config: RwLock<Arc<TopicConfig>>,
    pub(crate) fsync: RwLock<FsyncPolicy>,
    /// Whether a background flusher serves group commits; without one, appends flush inline.
    pub(crate) flusher_running: bool,
    pub(crate) appender: Mutex<AppendBuffer>,
    pub(crate) segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    pub(crate) start: AtomicU64,
    /// How far the last compaction pass reached, and when it ran (see `compaction.rs`).
    pub(crate) compacted: Mutex<Option<(u64, std::time::SystemTime)>>,
    pub(crate) end: OffsetWatch,
    pub(crate) durable: OffsetWatch,
    pub(crate) dirty: AtomicBool,
    pub(crate) last_flush: Mutex<Instant>,
    /// Wakes consumers of the whole topic on any append, and stream threads waiting on
    /// the whole log.
    pub(crate) activity: Arc<Activity>,
    pub(crate) log_activity: Arc<Activity>,
    truncation: Option<Truncation>,
    /// The offset below which everything is known fsynced: recovery truncates only past it.
    pub(crate) recovery: RecoveryPoint,
    /// Damaged ranges found so far (`damage.rs`).
    pub(crate) damage: RwLock<Vec<Damage>>,
    /// The partition's transactions (`transaction.rs`); held by every append.
    pub(crate) txn: Mutex<TxnState>,
    /// The ranges of aborted transactions, which readers skip.
    pub(crate) aborted: RwLock<Arc<Vec<Aborted>>>,
}

/// The appender's reusable encoding buffer; holding its lock is holding the right to append.
pub(crate) struct AppendBuffer {
    pub(crate) buf: Vec<u8>,
    /// The offset the next appended record gets (past `end` while a transaction is open).
    pub(crate) written: u64,
}

pub(crate) struct PartitionSetup {
    pub topic: String,
    pub partition: u32,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub fsync: FsyncPolicy,
    pub flusher_running: bool,
    pub activity: Arc<Activity>,
    pub log_activity: Arc<Activity>,
}

impl Partition {
    /// Opens (or creates) a partition directory, recovering the tail of its last segment.
    pub(crate) fn open(setup: PartitionSetup) -> Result<Partition> {
        let PartitionSetup {
            topic,
            partition,
            dir,
            config,
            fsync,
            flusher_running,
            activity,
            log_activity,
        } = setup;
        std::fs::create_dir_all(&dir).at(&dir)?;
        let id = Arc::new(PartitionId { topic, partition });
        let interval = config.index_interval_bytes;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = segment::parse_log_file_name(&name) {
                bases.push(base);
            } else if name.starts_with(".cleaning") {
                // A compaction that did not finish: its output was never swapped in.
                std::fs::remove_dir_all(entry.path()).at(&entry.path())?;
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut truncation = None;
        let mut damage = Vec::new();
        // A partition without a point (new, or written before points existed) has nothing
        // known durable: recovery behaves as it did before, cutting at the first bad batch.
        let (recovery, point) = RecoveryPoint::open(&dir, 0)?;
        let point = point.unwrap_or(0);
        if bases.is_empty() {
            segments.push(Arc::new(Segment::create(id.clone(), &dir, 0, interval)?));
            sync_dir(&dir)?;
        } else {
            for (i, &base) in bases.iter().enumerate() {
                let seg = match bases.get(i + 1) {
                    Some(&next) => Segment::open_sealed(id.clone(), &dir, base, next, interval)?,
                    None => {
                        let (seg, t, d) =
                            Segment::recover(id.clone(), &dir, base, interval, point)?;
                        truncation = t;
                        damage = d;
                        // Whatever survived the crash is on disk from now on.
                        seg.sync()?;
                        seg
                    }
                };
                segments.push(Arc::new(seg));
            }
        }
        let start = segments[0].base_offset;
        let end = segments.last().expect("at least one segment").next_offset();
        recovery.advance(end)?;
        recovery.sync()?;
        for d in &damage {
            tracing::error!(
                topic = %d.topic, partition = d.partition,
                "acknowledged records {}..{} are damaged in {} (bytes {}..{}): {}; kept, and \
                 reads that reach them fail until the topic is repaired",
                d.offsets.start, d.offsets.end, d.segment.display(), d.bytes.start, d.bytes.end,
                d.reason
            );
        }
        // Transactions open when the last process stopped leave their records unreadable until
        // they are settled (`Partition::resolve`): find them past the decided offset.
        let (mut txn, aborted) = TxnState::load(&dir, end)?;
        if let Some(from) = txn.scan_from() {
            for seg in segments.iter().filter(|s| s.next_offset() > from) {
                seg.scan(seg.position_for(from), seg.size(), |_, meta, _| {
                    if meta.next_offset() > from {
                        txn.found(&meta, &aborted);
                    }
                    std::ops::ControlFlow::Continue(())
                })?;
            }
        }
        let visible = txn.stable(end);
        Ok(Partition {
            id,
            dir,
            config: RwLock::new(Arc::new(config)),
            fsync: RwLock::new(fsync),
            flusher_running,
            appender: Mutex::new(AppendBuffer {
                buf: Vec::new(),
                written: end,
            }),
            segments: RwLock::new(Arc::new(segments)),
            start: AtomicU64::new(start),
            compacted: Mutex::new(None),
            end: OffsetWatch::new(visible),
            durable: OffsetWatch::new(end),
            dirty: AtomicBool::new(false),
            last_flush: Mutex::new(Instant::now()),
            activity,
            log_activity,
            truncation,
            recovery,
            damage: RwLock::new(damage),
            txn: Mutex::new(txn),
            aborted: RwLock::new(Arc::new(aborted)),
        })
    }

    /// Removes every record at or after `offset` (a batch boundary: the end of an earlier
    /// append). A store's recovery uses it to drop changelog records a crashed task appended
    /// but never committed (the changelog partition is that task's alone); it is not for
    /// general use, as readers may have seen the records it removes.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        let mut app = self.appender.lock();
        let end = app.written;
        if offset >= end {
            return Ok(0);
        }
        let segments = self.segments.read().clone();
        let Some(idx) = segments.iter().rposition(|s| s.base_offset <= offset) else {
            return Err(LogError::InvalidConfig(format!(
                "cannot truncate {}-{} to {offset}: before its start",
                self.id.topic, self.id.partition
            )));
        };
        let keep = &segments[idx];
        keep.truncate_before(offset)?;
        for s in &segments[idx + 1..] {
            s.delete_files()?;
        }
        self.recovery.lower(offset)?;
        let (reopened, _, _) = Segment::recover(
            self.id.clone(),
            &self.dir,
            keep.base_offset,
            self.config().index_interval_bytes,
            offset,
        )?;
        let mut list: Vec<Arc<Segment>> = segments[..idx].to_vec();
        list.push(Arc::new(reopened));
        *self.segments.write() = Arc::new(list);
        sync_dir(&self.dir)?;
        app.written = offset;
        self.end.reset(offset.min(self.end.get()));
        self.durable.reset(offset.min(self.durable.get()));
        Ok(end - offset)
    }

    pub fn topic(&self) -> &str {
        &self.id.topic
    }

    pub fn id(&self) -> u32 {
        self.id.partition
    }

    /// The first readable offset.
    pub fn start_offset(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// One past the last readable offset (the last stable offset): the offset the next appended
    /// record will get, unless a transaction is open.
    pub fn end_offset(&self) -> u64 {
        self.end.get()
    }

    /// The offset the next appended record will get, open transactions' records included.
    pub fn written_offset(&self) -> u64 {
        self.appender.lock().written
    }

    /// Offsets below this are acknowledged.
    pub fn durable_offset(&self) -> u64 {
        self.durable.get()
    }

    /// Bytes on disk in this partition's segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.read().iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// What recovery cut off the last segment when this partition was opened, if anything.
    pub fn recovered_truncation(&self) -> Option<Truncation> {
        self.truncation
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        *self.fsync.read()
    }

    /// A snapshot of the topic's settings as this partition applies them.
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.config.read().clone()
    }

    /// Applies changed settings from the next append, roll or cleaner pass on.
    pub(crate) fn reconfigure(&self, config: Arc<TopicConfig>, fsync: FsyncPolicy) {
        *self.config.write() = config;
        *self.fsync.write() = fsync;
    }

    pub(crate) fn active(&self) -> Arc<Segment> {
        self.segments.read().last().expect("never empty").clone()
    }

    /// Reads records at or after `offset`. An offset equal to the end offset returns nothing;
    /// one below the start or above the end is out of range. Aborted transactions' records are
    /// skipped; see [`Partition::read_on`] for where to read next when nothing but them was left.
    pub fn read(&self, offset: u64, limits: ReadLimits) -> Result<Vec<StoredRecord>> {
        Ok(self.read_on(offset, limits)?.records)
    }

    /// [`Partition::read`], with the offset to read from next: after the last record read, or,
    /// when nothing readable was left but aborted records, the end offset, so that a reader
    /// that tracks its position moves past them.
    pub fn read_on(&self, offset: u64, limits: ReadLimits) -> Result<Read> {
        let segments = self.segments.read().clone();
        let end = self.end.get();
        self.check_range(offset, end)?;
        let mut out = Vec::new();
        if offset == end {
            return Ok(Read {
                records: out,
                next: end,
            });
        }
        let first = holding(&segments, offset);
        let aborted = self.aborted.read().clone();
        let skip = |meta: &batch::BatchMeta| is_aborted(&aborted, meta);
        for seg in &segments[first..] {
            seg.read(
                offset,
                limits.max_records.max(1),
                limits.max_bytes,
                &skip,
                &mut out,
            )
            .map_err(|e| self.explain(seg, e))?;
            if !out.is_empty() {
                break;
            }
        }
        // A reader may see a batch whose append has not yet advanced `end`; it is not ours yet.
        while out.last().is_some_and(|r| r.offset >= end) {
            out.pop();
        }
        // Nothing left before `end` but what was skipped.
        let next = out.last().map_or(end, |r| r.offset + 1);
        Ok(Read { records: out, next })
    }

    pub(crate) fn check_range(&self, offset: u64, end: u64) -> Result<()> {
        let start = self.start_offset();
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                topic: self.id.topic.clone(),
                partition: self.id.partition,
                offset,
                start,
                end,
            });
        }
        Ok(())
    }

    /// The first offset whose record's timestamp is at or after `timestamp`, or `None` if every
    /// record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let segments = self.segments.read().clone();
        for seg in segments.iter().filter(|s| s.max_timestamp() >= timestamp) {
            if let Some(offset) = seg.offset_for_timestamp(timestamp)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// The largest record timestamp in the partition, if it holds any record.
    pub fn max_timestamp(&self) -> Option<i64> {
        let segments = self.segments.read().clone();
        segments
            .iter()
            .filter(|s| s.size() > 0)
            .map(|s| s.max_timestamp())
            .max()
    }

    /// Blocks until the end offset passes `offset` (a record at `offset` exists) or `timeout`.
    pub fn wait_for_data_blocking(&self, offset: u64, timeout: Option<Duration>) -> bool {
        self.end.wait_blocking(offset + 1, timeout)
    }

    /// Waits until a record at `offset` exists.
    pub async fn wait_for_data(&self, offset: u64) {
        self.end.wait(offset + 1).await
    }

    pub(crate) fn publish(&self, list: Vec<Arc<Segment>>) {
        *self.segments.write() = Arc::new(list);
    }
}

/// The index in `segments` (sorted by base offset) of the segment that holds `offset`.
pub(crate) fn holding(segments: &[Arc<Segment>], offset: u64) -> usize {
    segments
        .partition_point(|s| s.base_offset <= offset)
        .saturating_sub(1)
}

/// fsyncs a directory so that files created or renamed in it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
