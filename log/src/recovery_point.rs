//! The recovery point: the offset below which a partition is known to be on disk.
//!
//! After a crash, the end of the last segment may hold a torn batch: one whose write had not
//! reached the disk when the power went. Such a batch was never acknowledged (acknowledging waits
//! for the fsync), so recovery may cut it off. A batch that fails its checksum *below* an offset
//! that was fsynced is something else: damage to data that was acknowledged. Cutting the log
//! there would delete every later record with it, so recovery must tell the two apart, and the
//! recovery point is how (Kafka keeps one per partition for the same reason).
//!
//! # The rule
//! The point only ever holds an offset whose records were fsynced before it was written: the
//! partition writes it after each fsync of its active segment (group commit, `always`, a roll,
//! a clean close). Recovery truncates only at or past it; below it, a bad batch is reported as
//! damage and everything after it is kept (see `damage.rs`).
//!
//! # The file
//! `recovery-point` in the partition's directory holds two slots of 24 bytes: a magic number, a
//! sequence number, the offset, and a CRC-32C of them. Writes alternate between the slots and
//! open takes the valid one written last, so a write torn by a power loss costs at most the
//! newest value. Writing the
//! point is one small `pwrite` into the page cache, which survives a process crash; it is
//! fsynced at most once per [`SYNC_INTERVAL`] and on close, so after a power loss the point may
//! lag that much behind the last fsync. A lagging point only makes recovery treat damage just
//! below the real point as a torn tail: never the reverse.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{IoContext, Result};

const FILE_NAME: &str = "recovery-point";
const MAGIC: u32 = 0x4544_5250; // "EDRP"
const SLOT: usize = 24;
/// How stale the point may be on disk after a power loss.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct RecoveryPoint {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
}

struct State {
    offset: u64,
    /// The sequence number of the last write; its parity picks the slot of the next.
    seq: u64,
    last_sync: Instant,
    /// Whether a value was written since the last fsync.
    unsynced: bool,
}

impl RecoveryPoint {
    /// Opens the partition's point, creating it at `initial` when the file does not exist (a new
    /// partition, or one written before the point existed). Returns the point and the offset
    /// it held, `None` if there was no valid one.
    pub fn open(dir: &Path, initial: u64) -> Result<(RecoveryPoint, Option<u64>)> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        let mut bytes = [0u8; 2 * SLOT];
        let len = file.metadata().at(&path)?.len() as usize;
        let got = len.min(bytes.len());
        file.read_exact_at(&mut bytes[..got], 0).at(&path)?;
        let newest = [decode(&bytes[..SLOT]), decode(&bytes[SLOT..])]
            .into_iter()
            .flatten()
            .max();
        let (seq, found) = newest.map_or((0, None), |(seq, offset)| (seq, Some(offset)));
        let point = RecoveryPoint {
            path,
            file,
            state: Mutex::new(State {
                offset: found.unwrap_or(initial),
                seq,
                last_sync: Instant::now(),
                unsynced: false,
            }),
        };
        if found.is_none() {
            point.write(initial, true)?;
        }
        Ok((point, found))
    }

    /// The offset recovery may not truncate below.
    pub fn get(&self) -> u64 {
        self.state.lock().offset
    }

    /// Records that offsets below `offset` are fsynced. Call only after the fsync returned.
    /// The file itself is fsynced when [`SYNC_INTERVAL`] has passed since it last was.
    pub fn advance(&self, offset: u64) -> Result<()> {
        if offset <= self.get() {
            return Ok(());
        }
        self.write(offset, false)
    }

    /// Moves the point back to `offset` (records at or past it were removed on purpose), durably.
    pub fn lower(&self, offset: u64) -> Result<()> {
        if offset >= self.get() {
            return Ok(());
        }
        self.write(offset, true)
    }

    /// Makes the current point durable (a clean close).
    pub fn sync(&self) -> Result<()> {
        let mut state = self.state.lock();
        if state.unsynced {
            self.file.sync_data().at(&self.path)?;
            state.unsynced = false;
            state.last_sync = Instant::now();
        }
        Ok(())
    }

    fn write(&self, offset: u64, sync: bool) -> Result<()> {
        let mut state = self.state.lock();
        let seq = state.seq + 1;
        let mut slot = [0u8; SLOT];
        slot[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        slot[4..12].copy_from_slice(&seq.to_le_bytes());
        slot[12..20].copy_from_slice(&offset.to_le_bytes());
        let crc = crc32c::crc32c(&slot[0..20]);
        slot[20..24].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all_at(&slot, (seq % 2) * SLOT as u64)
            .at(&self.path)?;
        state.seq = seq;
        state.offset = offset;
        state.unsynced = true;
        if sync || state.last_sync.elapsed() >= SYNC_INTERVAL {
            self.file.sync_data().at(&self.path)?;
            state.unsynced = false;
            state.last_sync = Instant::now();
        }
        Ok(())
    }
}

/// A slot's sequence number and offset, if it holds a whole write.
fn decode(slot: &[u8]) -> Option<(u64, u64)> {
    let word = |r: std::ops::Range<usize>| u64::from_le_bytes(slot[r].try_into().unwrap());
    if slot.len() < SLOT || u32::from_le_bytes(slot[0..4].try_into().unwrap()) != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(slot[20..24].try_into().unwrap());
    (crc32c::crc32c(&slot[0..20]) == crc).then(|| (word(4..12), word(12..20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_point_starts_where_told_and_the_newest_valid_slot_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (p, found) = RecoveryPoint::open(dir.path(), 0).unwrap();
        assert_eq!((found, p.get()), (None, 0));
        p.advance(10).unwrap();
        p.advance(25).unwrap();
        p.advance(7).unwrap(); // never backwards
        drop(p);
        let (p, found) = RecoveryPoint::open(dir.path(), 0).unwrap();
        assert_eq!((found, p.get()), (Some(25), 25));
        p.advance(40).unwrap();
        drop(p);
        // A torn write of the newest slot leaves the one before.
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = if decode(&bytes[..SLOT]).map(|s| s.1) == Some(40) {
            0
        } else {
            SLOT
        };
        bytes[newest + 14] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (p, found) = RecoveryPoint::open(dir.path(), 0).unwrap();
        assert_eq!((found, p.get()), (Some(25), 25));
        p.lower(3).unwrap();
        drop(p);
        let (p, found) = RecoveryPoint::open(dir.path(), 0).unwrap();
        assert_eq!(found, Some(3));
        p.advance(5).unwrap();
        drop(p);
        let (_, found) = RecoveryPoint::open(dir.path(), 0).unwrap();
        assert_eq!(found, Some(5));
    }
}
