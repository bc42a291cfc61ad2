//! Retention: deleting a partition's oldest segments by age or by size.
//!
//! Retention works on whole sealed segments, never the active one, so it never rewrites data and
//! never races an appender. Age is event time: a segment goes once its newest record's
//! timestamp is older than `retention_ms` before now (as in Kafka, which also uses the largest
//! timestamp, not the file's age). Size: the oldest segments go while the partition would stay
//! at or above `retention_bytes` without them. A topic's only reader may also drop what it has
//! consumed ([`Partition::delete_before`]), as Kafka Streams purges its repartition topics.

use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::partition::Partition;
use crate::segment::Segment;

impl Partition {
    /// Applies the topic's retention at wall-clock time `now_ms`; returns the segments deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let (by_time, by_bytes) = (self.config().retention_ms, self.config().retention_bytes);
        if by_time.is_none() && by_bytes.is_none() {
            return Ok(0);
        }
        self.delete_oldest(|seg, total| {
            let too_old = by_time.is_some_and(|ms| {
                seg.max_timestamp() < now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            });
            let too_big = by_bytes.is_some_and(|b| total - seg.size() >= b);
            too_old || too_big
        })
    }

    /// Deletes the sealed segments, from the oldest, whose records all have timestamps below
    /// `timestamp`; returns how many went. For a topic whose owner knows that such records
    /// are no longer needed (a window buffer's changelog, whose expired records are deleted
    /// by range and never get tombstones), by its own clock rather than the wall clock.
    pub fn delete_older_than(&self, timestamp: i64) -> Result<usize> {
        self.delete_oldest(|seg, _| seg.max_timestamp() < timestamp)
    }

    /// Deletes the sealed segments whose records are all below `offset` (consumed by the
    /// topic's only reader); returns how many went. Records at or past `offset` stay.
    pub fn delete_before(&self, offset: u64) -> Result<usize> {
        self.delete_oldest(|seg, _| seg.next_offset() <= offset)
    }

    /// Deletes sealed segments from the oldest for as long as `expired(segment, bytes of the
    /// partition with it)` holds.
    fn delete_oldest(&self, expired: impl Fn(&Segment, u64) -> bool) -> Result<usize> {
        let removed = {
            let _app = self.appender.lock();
            let segments = self.segments.read().clone();
            let mut total: u64 = segments.iter().map(|s| s.size()).sum();
            let sealed = &segments[..segments.len() - 1];
            let mut n = 0;
            for seg in sealed {
                if !expired(seg, total) {
                    break;
                }
                total -= seg.size();
                n += 1;
            }
            if n == 0 {
                return Ok(0);
            }
            self.start.store(segments[n].base_offset, Ordering::Release);
            self.publish(segments[n..].to_vec());
            segments[..n].to_vec()
        };
        for seg in &removed {
            seg.delete_files()?;
        }
        self.forget_aborted_below(self.start_offset())?;
        tracing::debug!(
            topic = self.topic(),
            partition = self.id(),
            segments = removed.len(),
            "retention deleted segments"
        );
        Ok(removed.len())
    }
}
