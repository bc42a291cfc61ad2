//! Appending to a partition: batching records, rolling segments, and acknowledging appends
//! under the fsync policy (group commit by the flusher thread, or inline).
//!
//! One appender at a time holds the partition's `appender` lock while it encodes and writes;
//! `written` moves as batches land, `end` (readable) and `durable` (acknowledged) follow. An
//! fsync of the active segment is what moves `durable` and, after it, the recovery point.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{self, BatchFormat, Codec};
use crate::config::FsyncPolicy;
use crate::error::{LogError, Result};
use crate::partition::{sync_dir, AppendInfo, Partition, MAX_RECORD_BYTES};
use crate::record::Record;
use crate::segment::Segment;
use crate::space::retry_while_full;

/// A batch is closed once its records reach about this many bytes, so one read of a batch stays
/// small even when a producer appends a million records at once.
const BATCH_BYTES: usize = 1 << 20;

impl Partition {
    /// Appends records in order and returns once they are acknowledged under the partition's
    /// fsync policy (for group commit: once the fsync that covers them is done).
    pub fn append(&self, records: &[Record]) -> Result<AppendInfo> {
        let info = self.append_unacknowledged(records)?;
        self.wait_durable_blocking(info.next_offset())?;
        Ok(info)
    }

    /// Like [`Partition::append`], but awaits the group commit instead of blocking a thread.
    pub async fn append_async(&self, records: &[Record]) -> Result<AppendInfo> {
        let info = self.append_unacknowledged(records)?;
        self.wait_durable(info.next_offset()).await?;
        Ok(info)
    }

    /// Writes records and makes them readable, but returns before a group commit covers them:
    /// for producers that keep several appends in flight and acknowledge later with
    /// [`Partition::wait_durable_blocking`]. Under `always` they are fsynced before returning.
    /// They are readable once every transaction open before them has decided.
    pub fn append_unacknowledged(&self, records: &[Record]) -> Result<AppendInfo> {
        self.append_compressed_unacknowledged(records, Codec::None)
    }

    /// [`Partition::append_unacknowledged`] for records a Kafka producer sent compressed with
    /// `codec`: they are stored uncompressed, in one batch where they fit, with the codec noted
    /// so that they can be served as they came.
    pub fn append_compressed_unacknowledged(
        &self,
        records: &[Record],
        codec: Codec,
    ) -> Result<AppendInfo> {
        let mut txn = self.txn.lock();
        let info = self.write(records, None, codec)?;
        self.after_plain_append(&mut txn)?;
        Ok(info)
    }

    /// Waits, without blocking a thread, until offsets below `next_offset` are acknowledged.
    pub async fn wait_durable(&self, next_offset: u64) -> Result<()> {
        if self.flusher_running {
            self.durable.wait(next_offset).await;
            Ok(())
        } else {
            self.wait_durable_blocking(next_offset)
        }
    }

    /// Moves the readable end up to `offset`, waking readers.
    pub(crate) fn advance_end(&self, offset: u64) {
        self.end.advance(offset);
        self.wake();
    }

    /// Tells whoever waits on the topic or on the whole log that something changed.
    fn wake(&self) {
        self.activity.bump();
        self.log_activity.bump();
    }

    /// Writes records (a transaction's, with its `writer`) after the last ones; the caller
    /// holds the transaction state and makes them readable. A topic with log-append time gets
    /// the clock's time on every record instead of the producer's.
    pub(crate) fn write(
        &self,
        records: &[Record],
        writer: Option<u64>,
        codec: Codec,
    ) -> Result<AppendInfo> {
        let config = self.config();
        for r in records {
            if config.compact && r.key.is_none() {
                return Err(LogError::InvalidRecord {
                    topic: self.id.topic.clone(),
                    reason: "a compacted topic needs a key on every record".into(),
                });
            }
            if r.approx_size() > MAX_RECORD_BYTES {
                return Err(LogError::InvalidRecord {
                    topic: self.id.topic.clone(),
                    reason: format!(
                        "record of {} bytes exceeds {MAX_RECORD_BYTES}",
                        r.approx_size()
                    ),
                });
            }
        }
        let format = BatchFormat {
            codec,
            log_append_time: config.log_append_time,
        };
        let stamp = crate::record::now_ms();
        let mut app = self.appender.lock();
        let base_offset = app.written;
        let mut next = base_offset;
        let mut rest = records;
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len()
                && (take == 0 || bytes + rest[take].approx_size() <= BATCH_BYTES)
            {
                bytes += rest[take].approx_size();
                take += 1;
            }
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            // A write that finds the disk full waits for space on a stream thread (see
            // `space.rs`): both steps fail without effect, so a retry repeats nothing.
            let active = retry_while_full(LogError::is_no_space, || self.roll_if_needed(bytes))?;
            app.buf.clear();
            let meta = batch::encode(
                &mut app.buf,
                writer,
                format,
                stamp,
                chunk.iter().enumerate().map(|(i, r)| (next + i as u64, r)),
            )
            .expect("chunk is not empty");
            retry_while_full(LogError::is_no_space, || active.append(&app.buf, &[meta]))?;
            next = meta.next_offset();
            app.written = next;
        }
        if next == base_offset {
            return Ok(AppendInfo {
                base_offset,
                count: 0,
                log_append_time: None,
            });
        }
        match self.fsync_policy() {
            FsyncPolicy::Always => {
                self.active().sync()?;
                self.recovery.advance(next)?;
                self.durable.advance(next);
            }
            FsyncPolicy::Never => self.durable.advance(next),
            FsyncPolicy::IntervalMs(_) => self.dirty.store(true, Ordering::Release),
        }
        Ok(AppendInfo {
            base_offset,
            count: next - base_offset,
            log_append_time: format.log_append_time.then_some(stamp),
        })
    }

    /// Blocks until offsets below `next_offset` are acknowledged.
    pub fn wait_durable_blocking(&self, next_offset: u64) -> Result<()> {
        if !self.flusher_running && self.durable.get() < next_offset {
            self.flush()?;
        }
        self.durable.wait_blocking(next_offset, None);
        Ok(())
    }

    /// Rolls to a new segment if `incoming` bytes would overfill the active one or it is too old.
    /// Called with the appender lock held.
    fn roll_if_needed(&self, incoming: usize) -> Result<Arc<Segment>> {
        let active = self.active();
        let config = self.config();
        let full = active.size() + incoming as u64 > config.segment_bytes;
        let old = config
            .segment_ms
            .is_some_and(|ms| active.age() >= Duration::from_millis(ms));
        if active.size() == 0 || !(full || old) {
            return Ok(active);
        }
        active.seal()?;
        // Sealing fsynced the segment, and every one before it was fsynced when sealed.
        self.recovery.advance(active.next_offset())?;
        let next = Segment::create(
            self.id.clone(),
            &self.dir,
            active.next_offset(),
            self.config().index_interval_bytes,
        )?;
        sync_dir(&self.dir)?;
        let next = Arc::new(next);
        let mut segments = self.segments.write();
        let mut list = Vec::clone(&segments);
        list.push(next.clone());
        *segments = Arc::new(list);
        Ok(next)
    }

    /// Runs the group commit if this partition's interval has passed since the last one.
    pub(crate) fn flush_if_due(&self) -> Result<()> {
        let FsyncPolicy::IntervalMs(ms) = self.fsync_policy() else {
            return Ok(());
        };
        {
            let mut last = self.last_flush.lock();
            if last.elapsed() < Duration::from_millis(ms) {
                return Ok(());
            }
            *last = Instant::now();
        }
        self.flush()
    }

    /// The group commit: fsyncs what has been appended since the last flush and acknowledges it.
    /// Appends go on while the fsync runs.
    pub fn flush(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let (active, target) = {
            let app = self.appender.lock();
            (self.active(), app.written)
        };
        // Segments before `active` were fsynced when they were sealed.
        active.sync()?;
        self.recovery.advance(target)?;
        self.durable.advance(target);
        Ok(())
    }

    /// A clean close: everything written is fsynced (whatever the policy) and the recovery point
    /// says so durably, so that the next open finds no tail to doubt.
    pub(crate) fn close(&self) -> Result<()> {
        let app = self.appender.lock();
        self.active().sync()?;
        self.recovery.advance(app.written)?;
        self.recovery.sync()?;
        self.durable.advance(app.written);
        Ok(())
    }
}
