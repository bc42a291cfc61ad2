//! Transactions: a writer's records that become readable all at once, or never, as Kafka's.
//!
//! An exactly-once writer (a stateful query's task) appends its output inside a
//! [`Transaction`] as it produces it: its batches are marked with the writer (a 64-bit id, see
//! [`writer_id`]) and written in offset order among everyone else's, but readers stop at the
//! partition's *last stable offset*: the first offset of any transaction still open, or the end
//! when none is. [`Transaction::commit`] closes it, and the stable offset moves on over
//! everything decided since. [`Transaction::abort`] closes it too, and records its range in the
//! partition's aborted list, which readers skip (Kafka's aborted-transaction index): an aborted
//! batch is never read, compaction drops it. The writer's commit point is elsewhere (a task's
//! RocksDB commit, which records where its output ends), so the protocol is: append, wait until
//! durable, commit the state, commit the transaction.
//!
//! Several writers may have a transaction open on one partition at once (the tasks of a query,
//! or queries writing one topic), and plain appends go on meanwhile: the partition keeps the
//! order in which records were written, as Kafka keeps the order in which they were sent, and
//! a reader sees each writer's records once that writer commits and every writer before it has
//! decided.
//!
//! After a crash, the records of transactions open at the time are *undecided*: on open, the
//! partition scans from its *decided* offset (below which every transactional batch is known
//! to be committed, or aborted and listed) and keeps their writers' ranges hidden behind the
//! stable offset until whoever knows each writer's commit point settles them with
//! [`Partition::resolve`]: a writer's batches that end at or before the end its last commit
//! recorded are kept, the rest aborted. The SQL session does so when it opens, before anything
//! runs. Transactions that committed while an earlier one was still open (so above the decided
//! offset) are recorded with their ends in the `transaction` file, so the scan knows them
//! without asking anyone.
//!
//! ```text
//! transaction: magic "ETX3" | decided u64 | count u32 | (writer u64, end u64)* | CRC32C u32
//! aborted:     magic "EAB1" | count u32 | (writer u64, first u64, last u64)* | CRC32C u32
//! ```
//!
//! Both are little-endian and replaced whole by rename, so a crash leaves the old or the new
//! one. The aborted list is also fsynced before an abort takes effect: losing it would
//! resurrect aborted records. The `transaction` file is not (a commit is not durable before
//! its writer's own commit point is, either).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchMeta, Codec};
use crate::error::{IoContext, LogError, Result};
use crate::partition::{sync_dir, AppendInfo, Partition};
use crate::record::Record;
use crate::space::retry_while_full;

const DECIDED_MAGIC: &[u8; 4] = b"ETX3";
const ABORTED_MAGIC: &[u8; 4] = b"EAB1";
pub(crate) const DECIDED_FILE: &str = "transaction";
pub(crate) const ABORTED_FILE: &str = "aborted";

/// How far plain appends may take a partition past its recorded decided offset before it is
/// recorded again: what an open's scan may have to read.
const DECIDED_LAG: u64 = 10_000;

/// A writer's 64-bit id from its name (FNV-1a): what its batches carry.
pub fn writer_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The records a transaction left undecided when its process stopped: writer `writer`'s
/// batches between `start` and `end` (exclusive), among others'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    pub writer: u64,
    pub start: u64,
    pub end: u64,
}

/// An aborted transaction's range: writer `writer`'s batches in offsets `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Aborted {
    pub writer: u64,
    pub first: u64,
    pub last: u64,
}

/// Whether `meta` is a batch of an aborted transaction, by the aborted list `aborted`.
pub(crate) fn is_aborted(aborted: &[Aborted], meta: &BatchMeta) -> bool {
    meta.writer.is_some_and(|w| {
        aborted
            .iter()
            .any(|a| a.writer == w && a.first <= meta.base_offset && meta.base_offset <= a.last)
    })
}

/// A partition's transactions: open ones, undecided ones, the decided offset.
pub(crate) struct TxnState {
    dir: PathBuf,
    /// Whether the partition ever had a transaction (so its files exist).
    used: bool,
    /// Below this, every transactional batch is decided; as last recorded.
    decided: u64,
    /// Transactions committed above `decided`: writer → the end of its last committed one.
    committed: BTreeMap<u64, u64>,
    /// Open transactions of this process: writer → the first offset of its records.
    open: BTreeMap<u64, u64>,
    /// Transactions open when the last process stopped: writer → (first offset, end).
    undecided: BTreeMap<u64, (u64, u64)>,
}

fn with_crc(mut buf: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn checked(bytes: &[u8], magic: &[u8; 4]) -> Option<Vec<u8>> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    let ok =
        body.starts_with(magic) && crc32c::crc32c(body) == u32::from_le_bytes(crc.try_into().ok()?);
    ok.then(|| body[4..].to_vec())
}

fn encode_aborted(aborted: &[Aborted]) -> Vec<u8> {
    let mut buf = ABORTED_MAGIC.to_vec();
    buf.extend_from_slice(&(aborted.len() as u32).to_le_bytes());
    for a in aborted {
        for v in [a.writer, a.first, a.last] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    with_crc(buf)
}

fn decode_decided(bytes: &[u8]) -> Option<(u64, BTreeMap<u64, u64>)> {
    let body = checked(bytes, DECIDED_MAGIC)?;
    let u = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let decided = u(body.get(..8)?);
    let n = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let rest = body.get(12..)?;
    if rest.len() != n * 16 {
        return None;
    }
    let committed = rest
        .chunks_exact(16)
        .map(|c| (u(&c[..8]), u(&c[8..])))
        .collect();
    Some((decided, committed))
}

fn decode_aborted(bytes: &[u8]) -> Option<Vec<Aborted>> {
    let body = checked(bytes, ABORTED_MAGIC)?;
    let n = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let rest = body.get(4..)?;
    if rest.len() != n * 24 {
        return None;
    }
    let u = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    Some(
        rest.chunks_exact(24)
            .map(|c| Aborted {
                writer: u(&c[0..8]),
                first: u(&c[8..16]),
                last: u(&c[16..24]),
            })
            .collect(),
    )
}

/// Writes the aborted list of the partition in `dir` whole, fsynced, by rename.
fn save_aborted_in(dir: &Path, list: &[Aborted]) -> Result<()> {
    let path = dir.join(ABORTED_FILE);
    let tmp = dir.join(".aborted.tmp");
    std::fs::write(&tmp, encode_aborted(list)).at(&tmp)?;
    File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
    std::fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir)
}

impl TxnState {
    /// The recorded state of the partition in `dir`, whose records end at `end`: its decided
    /// offset and aborted list. Aborted ranges at or past `end` are dropped: a power loss cut
    /// off their records, and their offsets will be given again.
    pub(crate) fn load(dir: &Path, end: u64) -> Result<(TxnState, Vec<Aborted>)> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).at(&path),
            }
        };
        let decided_bytes = read(DECIDED_FILE)?;
        let aborted_bytes = read(ABORTED_FILE)?;
        let used = decided_bytes.is_some() || aborted_bytes.is_some();
        // Not fsynced, so a power loss may leave it empty: then the open scan starts from the
        // beginning, and what it finds is settled as any undecided record is.
        let (decided, committed) = decided_bytes
            .and_then(|b| decode_decided(&b))
            .unwrap_or_default();
        let mut aborted = match aborted_bytes {
            None => Vec::new(),
            Some(b) => decode_aborted(&b).ok_or_else(|| LogError::Metadata {
                path: dir.join(ABORTED_FILE),
                reason: "the list of aborted transactions is damaged".into(),
            })?,
        };
        if aborted.iter().any(|a| a.first >= end) {
            aborted.retain(|a| a.first < end);
            save_aborted_in(dir, &aborted)?;
        }
        let state = TxnState {
            dir: dir.to_path_buf(),
            used,
            decided,
            committed,
            open: BTreeMap::new(),
            undecided: BTreeMap::new(),
        };
        Ok((state, aborted))
    }

    /// Where the open scan for undecided batches starts (`None`: no transaction ever).
    pub(crate) fn scan_from(&self) -> Option<u64> {
        self.used.then_some(self.decided)
    }

    /// Counts `meta`, a batch found past the decided offset on open, as undecided, unless it is
    /// known to be aborted or committed.
    pub(crate) fn found(&mut self, meta: &BatchMeta, aborted: &[Aborted]) {
        let Some(w) = meta.writer else { return };
        if is_aborted(aborted, meta)
            || self
                .committed
                .get(&w)
                .is_some_and(|&end| meta.next_offset() <= end)
        {
            return;
        }
        let range = self
            .undecided
            .entry(w)
            .or_insert((meta.base_offset, meta.next_offset()));
        range.1 = meta.next_offset();
    }

    /// The last stable offset: the first offset of any open or undecided transaction, else
    /// `written`.
    pub(crate) fn stable(&self, written: u64) -> u64 {
        self.open
            .values()
            .chain(self.undecided.values().map(|(first, _)| first))
            .copied()
            .min()
            .unwrap_or(written)
            .min(written)
    }

    /// Records that everything below `decided` is decided, and that `writer`'s transaction
    /// ending at `end` committed (if it ends above that).
    fn record(&mut self, decided: u64, committed: Option<(u64, u64)>) -> Result<()> {
        let mut changed = decided != self.decided;
        self.decided = decided;
        if let Some((w, end)) = committed.filter(|&(_, end)| end > decided) {
            changed |= self.committed.insert(w, end) != Some(end);
        }
        let before = self.committed.len();
        self.committed.retain(|_, end| *end > decided);
        changed |= self.committed.len() != before;
        if changed && self.used {
            self.write()?;
        }
        Ok(())
    }

    fn write(&self) -> Result<()> {
        let mut buf = DECIDED_MAGIC.to_vec();
        buf.extend_from_slice(&self.decided.to_le_bytes());
        buf.extend_from_slice(&(self.committed.len() as u32).to_le_bytes());
        for (w, end) in &self.committed {
            buf.extend_from_slice(&w.to_le_bytes());
            buf.extend_from_slice(&end.to_le_bytes());
        }
        let (tmp, path) = (
            self.dir.join(".transaction.tmp"),
            self.dir.join(DECIDED_FILE),
        );
        let bytes = with_crc(buf);
        // Replaced whole by the rename: a write that fails for want of space can be retried.
        retry_while_full(LogError::is_no_space, || {
            std::fs::write(&tmp, &bytes).at(&tmp)?;
            std::fs::rename(&tmp, &path).at(&path)
        })
    }

    /// The first transaction on a partition: its files come to exist, recording that every
    /// batch below `written` is decided.
    fn start_using(&mut self, written: u64) -> Result<()> {
        if self.used {
            return Ok(());
        }
        self.used = true;
        self.decided = written;
        self.write()?;
        sync_dir(&self.dir)
    }
}

impl Partition {
    /// Moves the readable end to the stable offset, waking readers if it moved.
    fn publish_stable(&self, txn: &TxnState) {
        let stable = txn.stable(self.written_offset());
        if stable > self.end_offset() {
            self.advance_end(stable);
        }
    }

    /// After a plain append: the readable end follows, and the decided offset with it now and
    /// then when no transaction is open.
    pub(crate) fn after_plain_append(&self, txn: &mut TxnState) -> Result<()> {
        self.publish_stable(txn);
        let written = self.written_offset();
        let settled = txn.open.is_empty() && txn.undecided.is_empty();
        if txn.used && settled && written.saturating_sub(txn.decided) >= DECIDED_LAG {
            txn.record(written, None)?;
        }
        Ok(())
    }

    /// Replaces the aborted list with `list`, durably, before it takes effect. Called with the
    /// transaction state locked, which keeps changes to the list in order.
    fn save_aborted(&self, list: Vec<Aborted>) -> Result<()> {
        retry_while_full(LogError::is_no_space, || save_aborted_in(&self.dir, &list))?;
        *self.aborted.write() = Arc::new(list);
        Ok(())
    }

    /// Adds `range` to the aborted list.
    fn add_aborted(&self, range: Aborted) -> Result<()> {
        let mut list: Vec<Aborted> = self.aborted.read().as_ref().clone();
        list.push(range);
        list.sort_by_key(|a| a.first);
        self.save_aborted(list)
    }

    /// Drops the aborted ranges wholly below `start` (retention took their records).
    pub(crate) fn forget_aborted_below(&self, start: u64) -> Result<()> {
        let _txn = self.txn.lock();
        let list = self.aborted.read().clone();
        if !list.iter().any(|a| a.last < start) {
            return Ok(());
        }
        self.save_aborted(list.iter().filter(|a| a.last >= start).copied().collect())
    }

    /// A transaction of `writer` (see [`writer_id`]) on this partition. Nothing is recorded
    /// until it appends.
    pub fn begin(self: &Arc<Self>, writer: u64) -> Transaction {
        Transaction {
            partition: self.clone(),
            writer,
            end: None,
        }
    }

    /// The transactions left undecided when the last process stopped.
    pub fn undecided(&self) -> Vec<Undecided> {
        self.txn
            .lock()
            .undecided
            .iter()
            .map(|(&writer, &(start, end))| Undecided { writer, start, end })
            .collect()
    }

    /// Settles writer `writer`'s undecided transaction: its batches that end at or before
    /// `committed_end` (where its last commit recorded its output ends; 0 for none) are kept,
    /// the rest aborted.
    pub fn resolve(&self, writer: u64, committed_end: u64) -> Result<()> {
        let mut txn = self.txn.lock();
        let Some((first, end)) = txn.undecided.get(&writer).copied() else {
            return Ok(());
        };
        if committed_end < end {
            self.add_aborted(Aborted {
                writer,
                first: first.max(committed_end),
                last: end - 1,
            })?;
        }
        txn.undecided.remove(&writer);
        let stable = txn.stable(self.written_offset());
        let kept = committed_end.min(end);
        txn.record(stable, (kept > first).then_some((writer, kept)))?;
        self.publish_stable(&txn);
        Ok(())
    }
}

/// An open transaction of one writer on one partition; see the module docs. Dropped without
/// [`Transaction::commit`], it is aborted.
pub struct Transaction {
    partition: Arc<Partition>,
    writer: u64,
    /// One past its last record, once it has appended.
    end: Option<u64>,
}

impl Transaction {
    /// Writes records that stay unreadable until the commit; returns before they are durable
    /// (see [`Partition::wait_durable_blocking`]).
    pub fn append(&mut self, records: &[Record]) -> Result<AppendInfo> {
        let p = &self.partition;
        let mut txn = p.txn.lock();
        let written = p.written_offset();
        txn.start_using(written)?;
        // Open before the write: what a write that fails half-way leaves stays hidden.
        txn.open.entry(self.writer).or_insert(written);
        match p.write(records, Some(self.writer), Codec::None) {
            Ok(info) => {
                if info.count > 0 {
                    self.end = Some(info.next_offset());
                }
                Ok(info)
            }
            Err(e) => {
                // The transaction lock keeps other writers out: what was written is its own.
                let now = p.written_offset();
                if now > written {
                    self.end = Some(now);
                } else if self.end.is_none() {
                    txn.open.remove(&self.writer);
                    p.publish_stable(&txn);
                }
                Err(e)
            }
        }
    }

    /// One past the transaction's last record, if it wrote any.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Makes the records readable, once every transaction before them has decided.
    pub fn commit(mut self) -> Result<()> {
        self.close(false)
    }

    /// Takes the records back: no reader will ever see them.
    pub fn abort(mut self) -> Result<()> {
        self.close(true)
    }

    fn close(&mut self, abort: bool) -> Result<()> {
        let p = &self.partition;
        let mut txn = p.txn.lock();
        let Some(&first) = txn.open.get(&self.writer) else {
            self.end = None;
            return Ok(());
        };
        let Some(end) = self.end else {
            txn.open.remove(&self.writer);
            p.publish_stable(&txn);
            return Ok(());
        };
        if abort {
            // Listed before it stops holding the stable offset back: if listing fails, its
            // records stay hidden (and a restart settles them).
            p.add_aborted(Aborted {
                writer: self.writer,
                first,
                last: end - 1,
            })?;
        }
        txn.open.remove(&self.writer);
        self.end = None;
        let stable = txn.stable(p.written_offset());
        txn.record(stable, (!abort).then_some((self.writer, end)))?;
        p.publish_stable(&txn);
        Ok(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Err(e) = self.close(true) {
            tracing::error!(
                topic = self.partition.topic(),
                partition = self.partition.id(),
                "aborting a transaction failed: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aborted_list_reads_back_and_damage_is_detected() {
        let list = vec![
            Aborted {
                writer: 7,
                first: 10,
                last: 20,
            },
            Aborted {
                writer: writer_id("CTAS_X_0/1"),
                first: 15,
                last: 16,
            },
        ];
        let bytes = encode_aborted(&list);
        assert_eq!(decode_aborted(&bytes), Some(list));
        let mut bad = bytes.clone();
        bad[9] ^= 1;
        assert_eq!(decode_aborted(&bad), None);
        assert_eq!(decode_aborted(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_aborted(&encode_aborted(&[])), Some(Vec::new()));
    }

    #[test]
    fn the_decided_record_reads_back_and_damage_is_detected() {
        let mut state = TxnState {
            dir: std::env::temp_dir(),
            used: false,
            decided: 42,
            committed: BTreeMap::from([(7, 50), (9, 60)]),
            open: BTreeMap::new(),
            undecided: BTreeMap::new(),
        };
        state.record(45, Some((11, 44))).unwrap();
        // 44 is below the decided offset: nothing to remember about it.
        assert_eq!(state.committed, BTreeMap::from([(7, 50), (9, 60)]));
        let mut buf = DECIDED_MAGIC.to_vec();
        buf.extend_from_slice(&45u64.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&7u64.to_le_bytes());
        buf.extend_from_slice(&50u64.to_le_bytes());
        let bytes = with_crc(buf);
        assert_eq!(
            decode_decided(&bytes),
            Some((45, BTreeMap::from([(7, 50)])))
        );
        let mut bad = bytes.clone();
        bad[6] ^= 1;
        assert_eq!(decode_decided(&bad), None);
    }

    #[test]
    fn writers_get_stable_distinct_ids() {
        assert_eq!(writer_id("a/0"), writer_id("a/0"));
        assert_ne!(writer_id("a/0"), writer_id("a/1"));
    }
}
