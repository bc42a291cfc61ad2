//! A store whose writes wait in memory for the query's next commit.
//!
//! An operator that reads what it wrote a few records earlier (a join's window buffers) cannot
//! read RocksDB alone: its writes reach RocksDB only when the query commits, with the input
//! offsets they reflect. [`StagedStore`] keeps those writes in an ordered map that
//! reads merge over RocksDB, and [`StagedStore::checkpoint`] stages them (and their changelog
//! records) in the query's commit. Without backing (a push query) the map is the whole store.

use std::collections::BTreeMap;

use eddy_state::changelog::Changelog;
use eddy_state::{Commit, Entries, StateScope, Store};

use crate::error::Result;

/// How many staged writes a store holds before it asks for a commit (about 100 bytes each).
const STAGED_LIMIT: usize = 200_000;

pub struct StagedStore {
    backing: Option<(Store, Changelog)>,
    /// Writes since the last checkpoint: a value, or `None` for a deletion.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Every key below this is deleted (expired), staged as one range deletion.
    deleted_below: Option<Vec<u8>>,
}

impl StagedStore {
    /// A store kept only in memory.
    pub fn in_memory() -> StagedStore {
        StagedStore {
            backing: None,
            pending: BTreeMap::new(),
            deleted_below: None,
        }
    }

    /// The store `name` of `scope` (a task's), with its changelog, restored from the
    /// changelog first if the local copy is missing or behind.
    pub fn open(scope: &StateScope, name: &str) -> Result<StagedStore> {
        let (store, changelog) = scope.open(name)?;
        changelog.restore(scope.db())?;
        Ok(StagedStore {
            backing: Some((store, changelog)),
            pending: BTreeMap::new(),
            deleted_below: None,
        })
    }

    pub fn name(&self) -> &str {
        match &self.backing {
            Some((store, _)) => store.name(),
            None => "(in memory)",
        }
    }

    /// Whether the writes waiting for a commit have reached `STAGED_LIMIT` (never for a
    /// store kept only in memory, which has no commit to wait for).
    pub fn is_full(&self) -> bool {
        self.backing.is_some() && self.pending.len() >= STAGED_LIMIT
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        if self.deleted_below.as_deref().is_some_and(|b| key < b) {
            return Ok(None);
        }
        match &self.backing {
            Some((store, _)) => Ok(store.get(key)?),
            None => Ok(None),
        }
    }

    /// Calls `found(i, value)` for each of `keys` (sorted), with its value as
    /// [`StagedStore::get`] gives it, the ones not written since the last commit read from
    /// RocksDB together (one MultiGet), without copying them.
    pub fn get_many(
        &self,
        keys: &[&[u8]],
        mut found: impl FnMut(usize, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut stored: Vec<usize> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.pending.get(*key) {
                Some(v) => found(i, v.as_deref())?,
                None if self.deleted_below.as_deref().is_some_and(|b| *key < b) => found(i, None)?,
                None if self.backing.is_none() => found(i, None)?,
                None => stored.push(i),
            }
        }
        if let Some((store, _)) = &self.backing {
            let asked: Vec<&[u8]> = stored.iter().map(|&i| keys[i]).collect();
            store.get_many(&asked, true, |j, bytes| found(stored[j], bytes))?;
        }
        Ok(())
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        match self.backing {
            Some(_) => {
                self.pending.insert(key, None);
            }
            None => {
                self.pending.remove(&key);
            }
        }
    }

    /// Deletes every key below `bound`.
    pub fn delete_below(&mut self, bound: &[u8]) {
        if self.deleted_below.as_deref().is_some_and(|b| b >= bound) {
            return;
        }
        self.pending = self.pending.split_off(bound);
        if self.backing.is_some() {
            self.deleted_below = Some(bound.to_vec());
        }
    }

    /// The keys and values from `start` (inclusive) to `end` (exclusive; `None`: to the end), in
    /// key order, with the pending writes applied.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = self.live_start(start);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let stored = match &self.backing {
            Some((store, _)) => store.scan_range(start, end)?,
            None => Vec::new(),
        };
        Ok(self.with_pending(stored, start, end))
    }

    /// The backing store's keys and values of each range `[start, end)` (sorted by start), as
    /// they were at the last commit: read ahead for [`StagedStore::range_from`], which applies
    /// the writes made since. Nothing for a store kept only in memory.
    pub fn read_ahead(&self, ranges: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Entries>> {
        match &self.backing {
            Some((store, _)) => Ok(store.scan_ranges(ranges)?),
            None => Ok(vec![Vec::new(); ranges.len()]),
        }
    }

    /// What [`StagedStore::range`] gives for `[start, end)`, from `stored`: what
    /// [`StagedStore::read_ahead`] read for a range that covers it.
    pub fn range_from(
        &self,
        stored: &[(Vec<u8>, Vec<u8>)],
        start: &[u8],
        end: &[u8],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = self.live_start(start);
        if end <= start {
            return Vec::new();
        }
        let stored = stored
            .iter()
            .filter(|(k, _)| k.as_slice() >= start && k.as_slice() < end)
            .cloned()
            .collect();
        self.with_pending(stored, start, Some(end))
    }

    /// `start`, or the expiry bound if that is above it.
    fn live_start<'a>(&'a self, start: &'a [u8]) -> &'a [u8] {
        match &self.deleted_below {
            Some(b) if b.as_slice() > start => b.as_slice(),
            _ => start,
        }
    }

    /// `stored` (the backing store's entries of `[start, end)`) with the pending writes of that
    /// range applied.
    fn with_pending(
        &self,
        stored: Vec<(Vec<u8>, Vec<u8>)>,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::ops::Bound;
        let upper = match end {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let mut pending = self
            .pending
            .range::<[u8], _>((Bound::Included(start), upper))
            .peekable();
        if pending.peek().is_none() {
            return stored;
        }
        // Both are in key order: merge them, a pending write replacing the stored value of its
        // key (or deleting it).
        let mut merged = Vec::with_capacity(stored.len() + 1);
        let mut stored = stored.into_iter().peekable();
        loop {
            let take_stored = match (stored.peek(), pending.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((s, _)), Some((p, _))) => s < *p,
            };
            if take_stored {
                merged.extend(stored.next());
                continue;
            }
            let (k, v) = pending.next().expect("a pending write");
            if stored.peek().is_some_and(|(s, _)| s == k) {
                stored.next();
            }
            if let Some(v) = v {
                merged.push((k.clone(), v.clone()));
            }
        }
        merged
    }

    /// Drops the changelog records timestamped before `time` (see [`Changelog::expire_before`]):
    /// for a store whose keys below the bound given to [`StagedStore::delete_below`] are
    /// exactly those of records before `time`, checkpointed with times at or past their own.
    pub fn expire_changelog_before(&self, time: i64) -> Result<()> {
        if let Some((_, changelog)) = &self.backing {
            changelog.expire_before(time)?;
        }
        Ok(())
    }

    /// Stages the writes since the last checkpoint in `commit`, and appends them to the
    /// changelog (range deletions are not logged: a restored store deletes them again).
    pub fn checkpoint(&mut self, commit: &mut Commit, timestamp: i64) -> Result<()> {
        let Some((store, changelog)) = &self.backing else {
            return Ok(());
        };
        if let Some(bound) = self.deleted_below.take() {
            commit.delete_below(store, &bound);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        changelog.write(changes, timestamp, commit)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_merge_pending_writes_over_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let log = eddy_log::Log::open(dir.path().join("log"), Default::default()).unwrap();
        let db = eddy_state::StateDb::open(dir.path().join("state"), Default::default()).unwrap();
        let mut s = StagedStore::open(&eddy_state::StateScope::new(&db, &log, "q"), "buf").unwrap();
        s.put(b"a".to_vec(), b"1".to_vec());
        s.put(b"c".to_vec(), b"3".to_vec());
        let mut commit = Commit::new();
        s.checkpoint(&mut commit, 0).unwrap();
        db.commit(commit).unwrap();
        s.put(b"b".to_vec(), b"2".to_vec());
        s.delete(b"c".to_vec());
        let keys: Vec<Vec<u8>> = s
            .range(b"", None)
            .unwrap()
            .into_iter()
            .map(|kv| kv.0)
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        s.delete_below(b"b");
        assert_eq!(s.get(b"a").unwrap(), None);
        assert_eq!(s.range(b"", Some(b"z")).unwrap().len(), 1);
        let mut commit = Commit::new();
        s.checkpoint(&mut commit, 0).unwrap();
        db.commit(commit).unwrap();
        let reopened =
            StagedStore::open(&eddy_state::StateScope::new(&db, &log, "q"), "buf").unwrap();
        assert_eq!(
            reopened.range(b"", None).unwrap(),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
    }

    proptest::proptest! {
        /// A range read is the committed writes with the pending ones applied over them, by
        /// key, whatever their mix (the model is one map that takes every write in turn).
        #[test]
        fn ranges_apply_pending_writes_over_committed_ones(
            committed in proptest::collection::vec((0u8..12, proptest::option::of(0u8..4)), 0..16),
            pending in proptest::collection::vec((0u8..12, proptest::option::of(0u8..4)), 0..16),
            start in 0u8..12,
            end in proptest::option::of(0u8..13),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = eddy_log::Log::open(dir.path().join("log"), Default::default()).unwrap();
            let db = eddy_state::StateDb::open(dir.path().join("state"), Default::default()).unwrap();
            let mut s = StagedStore::open(&eddy_state::StateScope::new(&db, &log, "q"), "buf").unwrap();
            let mut model = BTreeMap::new();
            let mut write = |s: &mut StagedStore, (k, v): (u8, Option<u8>)| {
                match v {
                    Some(v) => s.put(vec![k], vec![v]),
                    None => s.delete(vec![k]),
                }
                model.insert(vec![k], v.map(|v| vec![v]));
            };
            for w in committed {
                write(&mut s, w);
            }
            let mut commit = Commit::new();
            s.checkpoint(&mut commit, 0).unwrap();
            db.commit(commit).unwrap();
            for w in pending {
                write(&mut s, w);
            }
            let end = end.map(|e| vec![e]);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                .into_iter()
                .filter(|(k, _)| *k >= vec![start] && end.as_ref().is_none_or(|e| k < e))
                .filter_map(|(k, v)| Some((k, v?)))
                .collect();
            let read = s.range(&[start], end.as_deref()).unwrap();
            proptest::prop_assert_eq!(read, expected.clone());
            if let Some(end) = &end {
                let ahead = s.read_ahead(&[(vec![0], vec![12])]).unwrap().remove(0);
                proptest::prop_assert_eq!(s.range_from(&ahead, &[start], end), expected);
            }
        }
    }
}
