//! Whole-batch reads, as a Kafka broker serves a fetch: batches as they were stored (with the
//! producer's codec and timestamp type in their attributes), starting at the batch that holds
//! the offset asked for, and only what is acknowledged, so that nothing a Kafka consumer has
//! been served can be taken back by a crash.

use crate::batch::{self, StoredBatch};
use crate::error::Result;
use crate::partition::{holding, Partition};
use crate::transaction::is_aborted;

/// Whole batches a read found, and where the next read starts.
#[derive(Debug)]
pub struct BatchRead {
    pub batches: Vec<StoredBatch>,
    pub next: u64,
}

impl Partition {
    /// One past the last record that is both readable and acknowledged: a single replica's
    /// high watermark in Kafka's terms. A reader that stops here never sees a record that a
    /// crash could take back, whatever the fsync policy. It lies on a batch boundary, since
    /// acknowledgement covers whole appends.
    pub fn acknowledged_end(&self) -> u64 {
        self.end_offset().min(self.durable_offset())
    }

    /// Reads whole batches, from the one holding `offset` (so its first records may lie below
    /// `offset`, as a Kafka broker's fetch returns them) until about `max_bytes` (at least one
    /// batch), and only acknowledged ones ([`Partition::acknowledged_end`]): what a Kafka
    /// consumer is served must still be there after a restart. Ranges (up to the readable end)
    /// and aborted transactions as for [`Partition::read_on`].
    pub fn read_batches(&self, offset: u64, max_bytes: usize) -> Result<BatchRead> {
        let segments = self.segments.read().clone();
        self.check_range(offset, self.end_offset())?;
        let end = self.acknowledged_end();
        let mut batches = Vec::new();
        if offset < end {
            let first = holding(&segments, offset);
            let aborted = self.aborted.read().clone();
            let skip = |meta: &batch::BatchMeta| is_aborted(&aborted, meta);
            for seg in &segments[first..] {
                seg.read_batches(offset, max_bytes, &skip, &mut batches)
                    .map_err(|e| self.explain(seg, e))?;
                if !batches.is_empty() {
                    break;
                }
            }
        }
        // Batches are written whole before `end` passes them, so none straddles it.
        while batches.last().is_some_and(|b| b.base_offset >= end) {
            batches.pop();
        }
        let next = batches.last().map_or(end, |b| b.last_offset + 1);
        Ok(BatchRead { batches, next })
    }
}
