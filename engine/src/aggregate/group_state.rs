//! An operator's keyed state: an in-memory map in front of a RocksDB store.
//!
//! Reads go to the map first and then to the store; writes stay in the map, marked dirty, until
//! [`GroupState::checkpoint`] stages them (and their changelog records) in the query's commit.
//! So a commit costs one RocksDB write batch however many records it covers, a key changed by
//! many records between two commits is written once, and a hot key is decoded once, not once
//! per record. After a checkpoint the map keeps at most `capacity` entries; the rest are
//! dropped (they are in RocksDB), which bounds the memory of a query with many keys. Between
//! checkpoints only dirty entries can take it past `capacity`, and then it asks for a commit
//! ([`GroupState::is_full`]).

// hashbrown's map with its default (foldhash) hasher: std's SipHash was a tenth of an
// aggregation's time, and `entry_ref` finds or inserts with one lookup.
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use eddy_state::changelog::Changelog;
use eddy_state::{Commit, StateDb, StateScope, Store};

use crate::error::{EngineError, Result};

/// Where a [`GroupState`] persists.
pub struct Backing {
    pub store: Store,
    pub changelog: Changelog,
}

enum Slot<V> {
    Clean(V),
    Dirty(V),
    /// Deleted since the last checkpoint.
    Deleted,
}

pub struct GroupState<V> {
    cache: HashMap<Vec<u8>, Slot<V>>,
    backing: Option<Backing>,
    /// Keys below this are to be deleted from the store at the next checkpoint.
    expired_below: Option<Vec<u8>>,
    /// The highest bound expired so far.
    expired_through: Option<Vec<u8>>,
    capacity: usize,
    /// Every key in the store above this one is also in the map (`None`: every key is), so a
    /// key above it that the map lacks is nowhere and its lookup never reaches RocksDB. It
    /// starts as the store's last key, and rises only as far as the keys eviction drops:
    /// eviction drops the smallest keys, and keys of time windows begin with the window's
    /// start, so the groups of the windows being filled are all looked up in memory alone.
    untracked_max: Option<Vec<u8>>,
    /// Keys made dirty or deleted since the last checkpoint (with repeats), so that a
    /// checkpoint visits only them, in key order.
    changed: Vec<Vec<u8>>,
}

fn state_error(store: &str, e: String) -> EngineError {
    EngineError::State(eddy_state::StateError::Corrupt {
        store: store.to_string(),
        message: e,
    })
}

impl<V> GroupState<V> {
    /// State kept only in memory (tests, and queries that need no durability).
    pub fn in_memory() -> GroupState<V> {
        GroupState {
            cache: HashMap::new(),
            backing: None,
            untracked_max: None,
            expired_below: None,
            expired_through: None,
            capacity: usize::MAX,
            changed: Vec::new(),
        }
    }

    /// State in the store `name` of `scope` (a task's), with its changelog.
    pub fn open(scope: &StateScope, name: &str, capacity: usize) -> Result<GroupState<V>> {
        let (store, changelog) = scope.open(name)?;
        Self::persistent(scope.db(), Backing { store, changelog }, capacity)
    }

    /// State persisted in `backing`, restored from its changelog first if the local copy is
    /// missing or behind.
    pub fn persistent(db: &StateDb, backing: Backing, capacity: usize) -> Result<GroupState<V>> {
        let replayed = backing.changelog.restore(db)?;
        if replayed > 0 {
            tracing::info!(
                store = backing.store.name(),
                replayed,
                "restored a state store from its changelog"
            );
        }
        let untracked_max = backing.store.last_key()?;
        Ok(GroupState {
            untracked_max,
            cache: HashMap::new(),
            backing: Some(backing),
            expired_below: None,
            expired_through: None,
            capacity,
            changed: Vec::new(),
        })
    }

    /// Removes and returns the value of `key`, from memory or the store. Put it back with
    /// [`GroupState::put`] (or leave it out with [`GroupState::delete`]); a value taken and
    /// never put back is read from the store again, as of the last checkpoint.
    pub fn take(
        &mut self,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<V, String>,
    ) -> Result<Option<V>> {
        match self.cache.remove(key) {
            Some(Slot::Clean(v) | Slot::Dirty(v)) => {
                // The key may be in the store: until it is put back (a caller that fails
                // halfway never does), a lookup must read the store, not trust the map.
                if self.backing.is_some() && self.untracked_max.as_deref() < Some(key) {
                    self.untracked_max = Some(key.to_vec());
                }
                return Ok(Some(v));
            }
            Some(Slot::Deleted) => {
                // Keep the deletion until it reaches the store.
                self.cache.insert(key.to_vec(), Slot::Deleted);
                return Ok(None);
            }
            None => {}
        }
        let Some(b) = &self.backing else {
            return Ok(None);
        };
        if self.untracked_max.as_deref().is_none_or(|m| key > m) {
            return Ok(None);
        }
        match b.store.get(key)? {
            Some(bytes) => Ok(Some(
                decode(&bytes).map_err(|e| state_error(b.store.name(), e))?,
            )),
            None => Ok(None),
        }
    }

    /// The value of `key` to update in place (marked dirty), loaded from the store or made by
    /// `init` if there is none. One hash lookup when the key is in memory, which is the hot
    /// path of an aggregation.
    pub fn entry(
        &mut self,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<V, String>,
        init: impl Fn() -> Result<V>,
    ) -> Result<&mut V> {
        let GroupState {
            cache,
            backing,
            untracked_max,
            changed,
            ..
        } = self;
        let slot = match cache.entry_ref(key) {
            EntryRef::Occupied(o) => {
                let slot = o.into_mut();
                match slot {
                    Slot::Dirty(_) => {}
                    Slot::Clean(_) => {
                        let Slot::Clean(v) = std::mem::replace(slot, Slot::Deleted) else {
                            unreachable!("matched Clean")
                        };
                        *slot = Slot::Dirty(v);
                        changed.push(key.to_vec());
                    }
                    Slot::Deleted => *slot = Slot::Dirty(init()?),
                }
                slot
            }
            EntryRef::Vacant(v) => {
                let in_store = untracked_max.as_deref().is_some_and(|m| key <= m);
                let loaded = match backing {
                    Some(b) if in_store => match b.store.get(key)? {
                        Some(bytes) => {
                            Some(decode(&bytes).map_err(|e| state_error(b.store.name(), e))?)
                        }
                        None => None,
                    },
                    _ => None,
                };
                let value = match loaded {
                    Some(v) => v,
                    None => init()?,
                };
                if backing.is_some() {
                    changed.push(key.to_vec());
                }
                v.insert(Slot::Dirty(value))
            }
        };
        match slot {
            Slot::Dirty(v) => Ok(v),
            _ => unreachable!("made dirty above"),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: V) {
        if self.backing.is_some() {
            self.changed.push(key.clone());
        }
        self.cache.insert(key, Slot::Dirty(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        if self.backing.is_some() {
            self.changed.push(key.clone());
            self.cache.insert(key, Slot::Deleted);
        } else {
            self.cache.remove(&key);
        }
    }

    /// The keys in the backing store as of the last checkpoint (none for in-memory state).
    /// Whether the map has outgrown its capacity: what is past it is dirty, and only a
    /// checkpoint lets it go.
    pub fn is_full(&self) -> bool {
        self.cache.len() > self.capacity
    }

    pub fn stored_keys(&self) -> Result<Vec<Vec<u8>>> {
        match &self.backing {
            Some(b) => Ok(b
                .store
                .scan_prefix(&[])?
                .into_iter()
                .map(|(k, _)| k)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Drops every key below `bound` (in byte order): expired windows, whose keys begin with
    /// their time.
    pub fn expire_below(&mut self, bound: Vec<u8>) {
        if self.expired_through.as_ref().is_some_and(|b| *b >= bound) {
            return;
        }
        self.cache.retain(|k, _| k.as_slice() >= bound.as_slice());
        if self.backing.is_some() {
            self.expired_below = Some(bound.clone());
        }
        self.expired_through = Some(bound);
    }

    /// Stages the changes since the last checkpoint in `commit` and the changelog.
    pub fn checkpoint(
        &mut self,
        commit: &mut Commit,
        timestamp: i64,
        encode: impl Fn(&V) -> Result<Vec<u8>, String>,
    ) -> Result<()> {
        let Some(b) = &self.backing else {
            return Ok(());
        };
        if let Some(bound) = self.expired_below.take() {
            commit.delete_below(&b.store, &bound);
        }
        // In key order: RocksDB inserts neighbouring keys into its memtable far faster than
        // scattered ones (its skip list reuses the position of the previous insert).
        let mut keys = std::mem::take(&mut self.changed);
        keys.sort_unstable();
        keys.dedup();
        let mut changes = Vec::with_capacity(keys.len());
        for k in keys {
            match self.cache.get_mut(&k) {
                Some(slot @ Slot::Dirty(_)) => {
                    let Slot::Dirty(v) = std::mem::replace(slot, Slot::Deleted) else {
                        unreachable!("matched Dirty")
                    };
                    let bytes = encode(&v).map_err(|e| state_error(b.store.name(), e))?;
                    *slot = Slot::Clean(v);
                    changes.push((k, Some(bytes)));
                }
                Some(Slot::Deleted) => {
                    self.cache.remove(&k);
                    changes.push((k, None));
                }
                // Expired, or written back already.
                Some(Slot::Clean(_)) | None => {}
            }
        }
        b.changelog.write(changes, timestamp, commit)?;
        self.evict();
        Ok(())
    }

    /// Keeps the map within its capacity: drops the clean entries with the smallest keys (for
    /// windows, the oldest), down to half the capacity. They are all in the store.
    fn evict(&mut self) {
        if self.cache.len() <= self.capacity {
            return;
        }
        let mut clean: Vec<&Vec<u8>> = self
            .cache
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Clean(_)))
            .map(|(k, _)| k)
            .collect();
        let excess = self.cache.len() - self.capacity / 2;
        let dropped_max = if excess >= clean.len() {
            let max = clean.into_iter().max().cloned();
            self.cache.retain(|_, s| !matches!(s, Slot::Clean(_)));
            max
        } else {
            let (_, bound, _) = clean.select_nth_unstable(excess);
            let bound = (*bound).clone();
            self.cache
                .retain(|k, s| !matches!(s, Slot::Clean(_)) || *k >= bound);
            // Every key dropped is below the bound.
            Some(bound)
        };
        if dropped_max > self.untracked_max {
            self.untracked_max = dropped_max;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use eddy_log::{Log, LogOptions};
    use eddy_state::{Commit, StateDb, StateOptions, StateScope};
    use proptest::prelude::*;

    use super::GroupState;

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, u64),
        Delete(u8),
        /// A caller that takes a value and fails before putting it back.
        TakeAndDrop(u8),
        Checkpoint,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u8>(), 1u64..100).prop_map(|(k, v)| Op::Add(k, v)),
            1 => any::<u8>().prop_map(Op::Delete),
            1 => any::<u8>().prop_map(Op::TakeAndDrop),
            2 => Just(Op::Checkpoint),
            1 => Just(Op::Reopen),
        ]
    }

    fn open(db: &StateDb, log: &Log) -> GroupState<u64> {
        // A tiny capacity, so that eviction and reads from RocksDB happen all the time.
        GroupState::open(&StateScope::new(db, log, "q"), "test", 8).unwrap()
    }

    fn decode(b: &[u8]) -> Result<u64, String> {
        Ok(u64::from_be_bytes(b.try_into().map_err(|_| "not 8 bytes")?))
    }

    proptest! {
        /// The cached, evicting, checkpointed state behaves as a plain map, and after a
        /// restart it is the map as of the last checkpoint.
        #[test]
        fn behaves_as_a_map_across_checkpoints_and_restarts(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path().join("log"), LogOptions { background: false, ..LogOptions::default() }).unwrap();
            let db = StateDb::open(dir.path().join("state"), StateOptions::default()).unwrap();
            let mut state = open(&db, &log);
            let mut model: BTreeMap<u8, u64> = BTreeMap::new();
            let mut committed = model.clone();
            for op in ops {
                match op {
                    Op::Add(k, v) => {
                        let key = [k];
                        let entry = state.entry(&key, decode, || Ok(0)).unwrap();
                        *entry += v;
                        *model.entry(k).or_default() += v;
                    }
                    Op::TakeAndDrop(k) => {
                        state.take(&[k], decode).unwrap();
                        // What is left of the key is what the store has: its last checkpoint.
                        if let Some(v) = model.get_mut(&k) {
                            match committed.get(&k) {
                                Some(c) => *v = *c,
                                None => {
                                    model.remove(&k);
                                }
                            }
                        }
                    }
                    Op::Delete(k) => {
                        state.delete(vec![k]);
                        model.remove(&k);
                    }
                    Op::Checkpoint => {
                        let mut commit = Commit::new();
                        state.checkpoint(&mut commit, 0, |v| Ok(v.to_be_bytes().to_vec())).unwrap();
                        db.commit(commit).unwrap();
                        committed = model.clone();
                    }
                    Op::Reopen => {
                        state = open(&db, &log);
                        model = committed.clone();
                    }
                }
            }
            for k in 0..=255u8 {
                let got = state.take(&[k], decode).unwrap();
                prop_assert_eq!(got, model.get(&k).copied(), "key {}", k);
            }
        }
    }
}
