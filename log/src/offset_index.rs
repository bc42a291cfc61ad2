//! The offset index: where in a segment file the batch holding an offset starts.
//!
//! Entries map an offset relative to the segment's base to the byte position of a batch that
//! starts at or before it. They are sparse (one per `index_interval_bytes` of log), so a lookup
//! lands on a batch boundary at most that many bytes before the wanted offset, and the reader
//! scans forward from there.

use crate::index_file::Entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Base offset of the batch minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            position: u32::from_le_bytes(b[4..8].try_into().unwrap()),
        }
    }
}
