//! The time index: the first offset at or after a timestamp.
//!
//! Record timestamps are event times chosen by producers, so they need not grow with offsets.
//! The index therefore records the running maximum: an entry `(ts, offset)` says "every record
//! before the batch at `offset` has a timestamp below `ts`, and that batch reaches `ts`". The
//! maxima grow, so entries are sorted on both fields. To find the first offset whose timestamp
//! is at or after `T`, a reader starts at the last entry whose `ts` is below `T` (everything
//! before it is older) and scans forward batch by batch.
//!
//! When a segment is sealed its largest timestamp is appended as a final entry, so that a sealed
//! segment's maximum (used by time retention) is the last entry and needs no scan.

use crate::index_file::Entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp in the segment up to and including the batch at `relative_offset`.
    pub max_timestamp: i64,
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            max_timestamp: i64::from_le_bytes(b[0..8].try_into().unwrap()),
            relative_offset: u32::from_le_bytes(b[8..12].try_into().unwrap()),
        }
    }
}
