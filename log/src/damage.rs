//! Damage: batches that fail their checksum where the log says records were acknowledged.
//!
//! A bad batch at the end of the last segment, past the recovery point (`recovery_point.rs`), is
//! a torn write that was never acknowledged, and recovery cuts it off. Anywhere else it is
//! damage to acknowledged data, and the log never deletes data to get past it:
//!
//! - **Found** on open (the last segment is scanned past the point), by a reader whose read
//!   crosses it, or by [`Partition::verify`], which scans every segment.
//! - **Kept around**: the scan resynchronizes on the next batch that verifies, so every record
//!   after the damage stays readable, and the partition's offsets go on from where they were.
//! - **Reported**: a read that reaches the damaged bytes fails with [`LogError::Corrupt`], which
//!   names the topic, partition and the offsets lost; it keeps failing, rather than skipping
//!   them silently, until someone decides otherwise.
//! - **Skipped on purpose**: [`Partition::repair`] rewrites each damaged segment without the
//!   damaged bytes, as compaction rewrites one, and appends what it skipped to `repairs.log` in
//!   the partition's directory. Readers then move over the gap as they move over compacted
//!   offsets. Offsets are never reused: if the damage ran to the end of the partition, the next
//!   record still gets the offset after the last one acknowledged.

use std::io::Write;
use std::ops::{ControlFlow, Range};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchMeta, BODY_FIXED_LEN, HEADER_LEN, MAX_BATCH_LEN};
use crate::error::{IoContext, LogError, Result};
use crate::partition::{sync_dir, Partition};
use crate::segment::{file_name, Segment, READ_CHUNK};

/// A damaged range of a partition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub topic: String,
    pub partition: u32,
    /// The offsets whose records cannot be read. Empty when the damaged bytes lay between two
    /// batches and no offset is missing.
    pub offsets: Range<u64>,
    /// The segment file, and the bytes in it that fail to verify.
    pub segment: PathBuf,
    pub bytes: Range<u64>,
    /// Why the first damaged batch failed (its checksum, its length ...).
    pub reason: String,
}

impl Damage {
    pub(crate) fn error(&self) -> LogError {
        LogError::Corrupt {
            topic: self.topic.clone(),
            partition: self.partition,
            offsets: self.offsets.clone(),
            path: self.segment.clone(),
            bytes: self.bytes.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// What a walk over a segment found.
pub(crate) struct Walk {
    /// Where the good data ends: the file's length, or the start of a torn tail.
    pub valid_end: u64,
    pub damage: Vec<Damage>,
}

/// Visits every good batch of `seg` between byte 0 and `end`, resynchronizing after damage on
/// the next batch that verifies. At a bad batch whose offset (the one after the last good batch)
/// makes `is_torn_tail` true, the walk stops there instead: recovery's torn tail. `last_offset`
/// ends a damaged range that runs to `end`.
pub(crate) fn walk(
    seg: &Segment,
    end: u64,
    last_offset: u64,
    is_torn_tail: impl Fn(u64) -> bool,
    mut on_batch: impl FnMut(u64, &BatchMeta, &Bytes) -> Result<()>,
) -> Result<Walk> {
    let mut pos = 0;
    let mut expected = seg.base_offset;
    let mut damage = Vec::new();
    loop {
        let mut valid_end = pos;
        let mut failed = None;
        let mut backwards = None;
        let scanned = seg.scan(pos, end, |at, meta, bytes| {
            // Offsets only grow: a batch that verifies but goes back is not where it belongs.
            if meta.base_offset < expected {
                backwards = Some(meta.base_offset);
                return ControlFlow::Break(());
            }
            if let Err(e) = on_batch(at, &meta, bytes) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
            valid_end = at + meta.total_len() as u64;
            expected = meta.next_offset();
            ControlFlow::Continue(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let reason = match (scanned, backwards) {
            (Ok(()), Some(base)) => {
                format!("a batch at offset {base} where offsets had reached {expected}")
            }
            (Ok(()), None) => {
                return Ok(Walk {
                    valid_end: end,
                    damage,
                })
            }
            (Err(LogError::Corrupt { reason, .. }), _) => reason,
            (Err(e), _) => return Err(e),
        };
        if is_torn_tail(expected) {
            return Ok(Walk { valid_end, damage });
        }
        let resumed = next_batch(seg, valid_end + 1, end, expected)?;
        let (to_byte, to_offset) = resumed.unwrap_or((end, last_offset.max(expected)));
        damage.push(Damage {
            topic: seg.id.topic.clone(),
            partition: seg.id.partition,
            offsets: expected..to_offset,
            segment: seg.path().to_path_buf(),
            bytes: valid_end..to_byte,
            reason,
        });
        if resumed.is_none() {
            return Ok(Walk {
                valid_end: end,
                damage,
            });
        }
        pos = to_byte;
    }
}

/// Every damaged range of `seg`, read whole (no range of it is a torn tail).
fn damage_in(seg: &Segment) -> Result<Vec<Damage>> {
    Ok(walk(
        seg,
        seg.size(),
        seg.next_offset(),
        |_| false,
        |_, _, _| Ok(()),
    )?
    .damage)
}

/// The position and base offset of the first batch at or after byte `from` (and before `end`)
/// that verifies and whose offsets could follow `min_offset` in this segment. A damaged batch's
/// own length cannot be trusted, so this looks at every byte; it runs only where damage is.
fn next_batch(seg: &Segment, from: u64, end: u64, min_offset: u64) -> Result<Option<(u64, u64)>> {
    let plausible = |base: u64| base >= min_offset && base - seg.base_offset <= u64::from(u32::MAX);
    let mut pos = from;
    while pos + HEADER_LEN as u64 <= end {
        let chunk = seg.read_at(pos, ((end - pos) as usize).min(READ_CHUNK))?;
        let last = chunk.len() - HEADER_LEN;
        for i in 0..=last {
            let base = u64::from_le_bytes(chunk[i..i + 8].try_into().unwrap());
            let body = u32::from_le_bytes(chunk[i + 8..i + 12].try_into().unwrap()) as usize;
            let at = pos + i as u64;
            let total = HEADER_LEN + body;
            if !plausible(base)
                || !(BODY_FIXED_LEN..=MAX_BATCH_LEN).contains(&body)
                || at + total as u64 > end
            {
                continue;
            }
            let bytes = if i + total <= chunk.len() {
                chunk.slice(i..i + total)
            } else {
                seg.read_at(at, total)?
            };
            if batch::parse(&bytes).is_ok() {
                return Ok(Some((at, base)));
            }
        }
        pos += (last + 1) as u64;
    }
    Ok(None)
}

impl Partition {
    /// The damage found so far: by recovery when the partition was opened, and by reads.
    pub fn damage(&self) -> Vec<Damage> {
        self.damage.read().clone()
    }

    /// Scans every segment and returns every damaged range (a full read of the partition).
    pub fn verify(&self) -> Result<Vec<Damage>> {
        let segments = self.segments.read().clone();
        let mut found = Vec::new();
        for seg in segments.iter() {
            found.extend(damage_in(seg)?);
        }
        self.remember(&found);
        Ok(found)
    }

    /// Turns a read's checksum failure in `seg` into the error of the damage it hit, naming
    /// every offset lost, and remembers the damage.
    pub(crate) fn explain(&self, seg: &Segment, e: LogError) -> LogError {
        let LogError::Corrupt { bytes, .. } = &e else {
            return e;
        };
        let at = bytes.start;
        let hit = |d: &Damage| d.segment == seg.path() && d.bytes.contains(&at);
        if let Some(d) = self.damage.read().iter().find(|d| hit(d)) {
            return d.error();
        }
        match damage_in(seg) {
            Ok(damage) => {
                self.remember(&damage);
                damage.iter().find(|d| hit(d)).map_or(e, Damage::error)
            }
            Err(_) => e,
        }
    }

    fn remember(&self, found: &[Damage]) {
        let mut known = self.damage.write();
        for d in found {
            if !known.contains(d) {
                tracing::error!(
                    topic = %d.topic, partition = d.partition,
                    "damaged records {}..{} in {} (bytes {}..{}): {}",
                    d.offsets.start, d.offsets.end, d.segment.display(),
                    d.bytes.start, d.bytes.end, d.reason
                );
                known.push(d.clone());
            }
        }
    }

    /// Rewrites every damaged segment without its damaged bytes, so that readers move over them,
    /// and appends what was skipped to `repairs.log`. Returns the ranges skipped. Appends wait
    /// while it runs.
    pub fn repair(&self) -> Result<Vec<Damage>> {
        let _app = self.appender.lock();
        let segments = self.segments.read().clone();
        let mut list = Vec::clone(&segments);
        let mut skipped = Vec::new();
        let mut continue_at = None;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let damage = damage_in(seg)?;
            if damage.is_empty() {
                continue;
            }
            list[i] = Arc::new(self.rewrite(seg, segments.get(i + 1).map(|s| s.base_offset))?);
            if last && list[i].next_offset() < seg.next_offset() {
                continue_at = Some(seg.next_offset());
            }
            skipped.extend(damage);
        }
        if let Some(base) = continue_at {
            // The damage ran to the end: a fresh segment keeps the next offset where it was.
            let interval = self.config().index_interval_bytes;
            list.push(Arc::new(Segment::create(
                self.id.clone(),
                &self.dir,
                base,
                interval,
            )?));
            sync_dir(&self.dir)?;
        }
        if skipped.is_empty() {
            return Ok(skipped);
        }
        self.record_repairs(&skipped)?;
        self.publish(list);
        self.damage.write().clear();
        Ok(skipped)
    }

    /// Writes `seg`'s good batches to a new file, swaps it in and reopens it.
    fn rewrite(&self, seg: &Segment, next_base: Option<u64>) -> Result<Segment> {
        let base = seg.base_offset;
        let work = self.dir.join(format!(".repairing-{base}"));
        if work.exists() {
            std::fs::remove_dir_all(&work).at(&work)?;
        }
        std::fs::create_dir(&work).at(&work)?;
        let interval = self.config().index_interval_bytes;
        let fresh = Segment::create(self.id.clone(), &work, base, interval)?;
        walk(
            seg,
            seg.size(),
            seg.next_offset(),
            |_| false,
            |_, meta, bytes| fresh.append(bytes, std::slice::from_ref(meta)),
        )?;
        fresh.seal()?;
        drop(fresh);
        for ext in ["index", "timeindex"] {
            let p = self.dir.join(file_name(base, ext));
            if p.exists() {
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        let (from, to) = (work.join(file_name(base, "log")), seg.path().to_path_buf());
        std::fs::rename(&from, &to).at(&to)?;
        sync_dir(&self.dir)?;
        std::fs::remove_dir_all(&work).at(&work)?;
        match next_base {
            Some(next) => Segment::open_sealed(self.id.clone(), &self.dir, base, next, interval),
            None => {
                let (seg, _, _) = Segment::recover(self.id.clone(), &self.dir, base, interval, 0)?;
                Ok(seg)
            }
        }
    }

    fn record_repairs(&self, skipped: &[Damage]) -> Result<()> {
        let path = self.dir.join("repairs.log");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        let at = crate::record::now_ms();
        for d in skipped {
            let line = serde_json::json!({ "repaired_at_ms": at, "skipped": d });
            writeln!(file, "{line}").at(&path)?;
        }
        file.sync_all().at(&path)
    }
}
