//! A store: one operator's key space in the shared database.

use crate::db::StateDb;
use crate::error::{Result, StateError};

/// Keys and values read from a store, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The keys of one operator of one query. Keys are stored behind a prefix made of the store's
/// id (`s` and four bytes; [`StateDb::store`] keeps the name → id registry), so stores never see
/// each other's keys, a prefix scan stays inside one store, and RocksDB compares short keys.
#[derive(Clone)]
pub struct Store {
    db: StateDb,
    name: String,
    prefix: Vec<u8>,
}

impl Store {
    pub(crate) fn new(db: StateDb, name: &str, id: u32) -> Store {
        Store {
            db,
            name: name.to_string(),
            prefix: Self::prefix_of(id),
        }
    }

    pub(crate) fn prefix_of(id: u32) -> Vec<u8> {
        let mut prefix = b"s".to_vec();
        prefix.extend_from_slice(&id.to_be_bytes());
        prefix
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        self.key_into(key, &mut k);
        k
    }

    /// [`Store::key`] into `out`, replacing what it held.
    pub(crate) fn key_into(&self, key: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.db().get(self.key(key))?)
    }

    /// Looks every key of `keys` up at once (RocksDB's batched MultiGet, which shares index
    /// and filter probes between keys in one block), passing `found` each key's position in
    /// `keys` and its value, if any, without copying it. `sorted`: the keys are in order
    /// already, which spares RocksDB sorting them.
    pub fn get_many<K: AsRef<[u8]>, E: From<StateError>>(
        &self,
        keys: &[K],
        sorted: bool,
        mut found: impl FnMut(usize, Option<&[u8]>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let db = self.db.db();
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k.as_ref())).collect();
        let cf = db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .expect("the default column family");
        for (i, value) in db
            .batched_multi_get_cf(cf, &full, sorted)
            .into_iter()
            .enumerate()
        {
            found(i, value.map_err(StateError::from)?.as_deref())?;
        }
        Ok(())
    }

    /// Every key and value of the store whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries> {
        let start = self.key(prefix);
        let mut out = Vec::new();
        for item in self.db.db().prefix_iterator(&start) {
            let (k, v) = item?;
            if !k.starts_with(&start) {
                break;
            }
            out.push((k[self.prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every key and value of the store from `start` (inclusive) to `end` (exclusive; `None`:
    /// to the store's end), in key order.
    pub fn scan_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Entries> {
        let from = self.key(start);
        let mut out = Vec::new();
        // The upper bound lets RocksDB stop at the range's end instead of reading past it.
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound(match end {
            Some(e) => self.key(e),
            None => self.next_prefix(),
        });
        let mut it = self.db.db().raw_iterator_opt(options);
        it.seek(&from);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            out.push((k[self.prefix.len()..].to_vec(), v.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The keys and values of each range `[start, end)` of `ranges` (sorted by start, for
    /// forward seeks), read with one iterator: what [`Store::scan_range`] would give for each,
    /// without creating an iterator per range.
    pub fn scan_ranges(&self, ranges: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Entries>> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound(self.next_prefix());
        let mut it = self.db.db().raw_iterator_opt(options);
        let mut out = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            let end = self.key(end);
            let mut found = Vec::new();
            it.seek(self.key(start));
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else {
                    break;
                };
                if k >= end.as_slice() {
                    break;
                }
                found.push((k[self.prefix.len()..].to_vec(), v.to_vec()));
                it.next();
            }
            it.status()?;
            out.push(found);
        }
        Ok(out)
    }

    /// The prefix after this store's: every key of this store sorts below it.
    fn next_prefix(&self) -> Vec<u8> {
        let mut end = self.prefix.clone();
        for i in (0..end.len()).rev() {
            if end[i] < 0xff {
                end[i] += 1;
                end.truncate(i + 1);
                break;
            }
        }
        end
    }

    /// The store's largest key, if it has any.
    pub fn last_key(&self) -> Result<Option<Vec<u8>>> {
        let end = self.next_prefix();
        let mut it = self.db.db().iterator(rocksdb::IteratorMode::From(
            &end,
            rocksdb::Direction::Reverse,
        ));
        match it.next() {
            Some(item) => {
                let (k, _) = item?;
                Ok(k.starts_with(&self.prefix)
                    .then(|| k[self.prefix.len()..].to_vec()))
            }
            None => Ok(None),
        }
    }

    /// Whether the store holds no key at all.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.scan_first().is_none())
    }

    fn scan_first(&self) -> Option<()> {
        let mut it = self.db.db().prefix_iterator(&self.prefix);
        match it.next() {
            Some(Ok((k, _))) if k.starts_with(&self.prefix) => Some(()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Commit, StateDb, StateOptions};

    #[test]
    fn get_many_finds_each_key_of_its_own_store_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), StateOptions::default()).unwrap();
        let (a, b) = (db.store("q/a").unwrap(), db.store("q/b").unwrap());
        let mut commit = Commit::new();
        commit.put(&a, b"k1", b"one");
        commit.put(&a, b"k3", b"three");
        commit.put(&b, b"k2", b"other store");
        db.commit(commit).unwrap();
        let mut seen = Vec::new();
        a.get_many(&[b"k3".as_slice(), b"k2", b"k1"], false, |i, v| {
            seen.push((i, v.map(<[u8]>::to_vec)));
            Ok::<_, crate::StateError>(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (0, Some(b"three".to_vec())),
                (1, None),
                (2, Some(b"one".to_vec()))
            ]
        );
    }
}
