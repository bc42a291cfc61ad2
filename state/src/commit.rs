//! A commit: the state changes and positions of a query's work since its last commit, applied
//! together.

use rocksdb::WriteBatch;

use crate::store::Store;

/// Staged writes to any number of stores, plus positions (input offsets, output ends), that
/// [`crate::StateDb::commit`] applies as one atomic RocksDB write.
#[derive(Default)]
pub struct Commit {
    batch: WriteBatch,
    /// The prefixed key being written: RocksDB copies it into the batch, so one buffer serves
    /// every put.
    key: Vec<u8>,
}

/// Offsets live under their own prefix so that no store key can collide with them.
pub(crate) fn offset_key(owner: &str, name: &str) -> Vec<u8> {
    let mut k = b"o\0".to_vec();
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

impl Commit {
    pub fn new() -> Commit {
        Commit::default()
    }

    pub fn put(&mut self, store: &Store, key: &[u8], value: &[u8]) {
        store.key_into(key, &mut self.key);
        self.batch.put(&self.key, value);
    }

    pub fn delete(&mut self, store: &Store, key: &[u8]) {
        store.key_into(key, &mut self.key);
        self.batch.delete(&self.key);
    }

    /// Deletes every key of `store` below `end` (expired windows, whose keys start with their
    /// time). Not written to the changelog: a store restored from it deletes them again.
    pub fn delete_below(&mut self, store: &Store, end: &[u8]) {
        self.batch.delete_range(store.key(&[]), store.key(end));
    }

    /// Records a position of `owner`'s, read back by [`crate::StateDb::offset`].
    pub fn set_offset(&mut self, owner: &str, name: &str, offset: u64) {
        self.batch
            .put(offset_key(owner, name), offset.to_be_bytes());
    }

    /// Forgets a position of `owner`'s.
    pub fn delete_offset(&mut self, owner: &str, name: &str) {
        self.batch.delete(offset_key(owner, name));
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    pub(crate) fn into_batch(self) -> WriteBatch {
        self.batch
    }
}
