//! A sparse, sorted index kept in memory and mirrored to a file of fixed-size entries.
//!
//! Both of a segment's indexes (by offset and by time) are this shape. The in-memory copy
//! answers lookups; the file spares a restart from rescanning sealed segments. Indexes are
//! derived data: the active segment's are rebuilt from the log on every open, and a sealed
//! segment's are rebuilt whenever the file looks wrong, so they are never fsynced except when
//! a segment is sealed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use crate::error::{IoContext, Result};

/// A fixed-size index entry.
pub(crate) trait Entry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

pub(crate) struct IndexFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    file: Option<File>,
    /// Entries not yet written to the file, so that an append writes a few bytes at a time.
    pending: Vec<u8>,
    /// The file's length while it is open for writing: a write that fails part-way is cut
    /// back to it, so the file never holds a piece of an entry.
    written: u64,
}

impl<E: Entry> IndexFile<E> {
    /// Starts an empty index, truncating any file at `path`.
    pub fn create(path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .at(&path)?;
        Ok(IndexFile {
            path,
            entries: Vec::new(),
            file: Some(file),
            pending: Vec::new(),
            written: 0,
        })
    }

    /// Loads the entries of an existing file, or `None` if it is missing or not a whole number
    /// of entries (the caller then rebuilds it).
    pub fn load(path: PathBuf) -> Result<Option<Self>> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(IndexFile {
            path,
            entries,
            file: None,
            pending: Vec::new(),
            written: bytes.len() as u64,
        }))
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub fn push(&mut self, entry: E) {
        entry.encode(&mut self.pending);
        self.entries.push(entry);
    }

    /// Writes pending entries to the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .open(&self.path)
                .at(&self.path)?;
            self.file = Some(f);
        }
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&self.pending) {
            // The entries stay pending, to be written whole by the next flush.
            let _ = file.set_len(self.written);
            return Err(e).at(&self.path);
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Flushes and fsyncs, then drops the write handle: a sealed segment's index never changes.
    pub fn seal(&mut self) -> Result<()> {
        self.flush()?;
        if let Some(f) = self.file.take() {
            f.sync_data().at(&self.path)?;
        }
        Ok(())
    }

    /// Index of the last entry for which `before` is true (entries are sorted so that `before`
    /// holds for a prefix).
    pub fn last_where(&self, before: impl Fn(&E) -> bool) -> Option<usize> {
        self.entries.partition_point(before).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offset_index::OffsetEntry;

    #[test]
    fn survives_a_reload_and_rejects_a_partial_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::<OffsetEntry>::create(path.clone()).unwrap();
        for i in 0..10 {
            idx.push(OffsetEntry {
                relative_offset: i * 3,
                position: i * 100,
            });
        }
        idx.seal().unwrap();
        let loaded = IndexFile::<OffsetEntry>::load(path.clone())
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries().len(), 10);
        assert_eq!(loaded.last_where(|e| e.relative_offset <= 10), Some(3));
        assert_eq!(loaded.last_where(|e| e.position > 1000), None);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, bytes).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(path).unwrap().is_none());
    }
}
