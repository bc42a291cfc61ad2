//! Which join keys each segment of a buffer has received, kept in memory so that a lookup of a
//! key that a segment never received does not read RocksDB.
//!
//! A lookup is a RocksDB seek per segment it spans, and in most joins many records find
//! nothing on the other side (in an inner join of pairs, the first record of every pair). The
//! filter answers "maybe" or "certainly not" per (segment, key):
//!
//! - A segment that existed before the process started may hold keys the filter never saw, so
//!   it always answers "maybe" there: only segments after the buffer's observed time at start
//!   are tracked, and every record they hold went through [`KeyFilter::insert`].
//! - Keys are kept as 64-bit hashes: a collision costs a needless read, never a missed match.
//! - Memory is bounded: past `capacity` hashes for a side, the segment being filled stops
//!   being tracked and answers "maybe" from then on.
//!
//! It is rebuilt (as "maybe" for every old segment) on restart, so it needs no persistence,
//! and a micro-batch that is rolled back by a crash takes it down with the process.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashSet};

/// The hashes one side's buffer may be asked about.
pub(super) struct KeyFilter {
    /// The first segment tracked: earlier ones were (perhaps) written before the process
    /// started.
    first_tracked: u64,
    /// Per tracked segment that has received records, their keys' hashes (`None`: too many,
    /// no longer tracked).
    segments: BTreeMap<u64, Option<HashSet<u64>>>,
    /// Hashes held, over all segments.
    entries: usize,
    capacity: usize,
    hasher: DefaultHashBuilder,
}

impl KeyFilter {
    pub(super) fn new(first_tracked: u64, capacity: usize) -> KeyFilter {
        KeyFilter {
            first_tracked,
            segments: BTreeMap::new(),
            entries: 0,
            capacity,
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Notes that `segment` received a record with key `key`.
    pub(super) fn insert(&mut self, segment: u64, key: &[u8]) {
        if segment < self.first_tracked {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let slot = self
            .segments
            .entry(segment)
            .or_insert_with(|| Some(HashSet::new()));
        if let Some(set) = slot {
            if set.insert(hash) {
                self.entries += 1;
                if self.entries > self.capacity {
                    self.entries -= set.len();
                    *slot = None;
                }
            }
        }
    }

    /// Whether `segment` may hold records of `key`.
    pub(super) fn may_contain(&self, segment: u64, key: &[u8]) -> bool {
        if segment < self.first_tracked {
            return true;
        }
        match self.segments.get(&segment) {
            None => false,
            Some(None) => true,
            Some(Some(set)) => set.contains(&self.hasher.hash_one(key)),
        }
    }

    /// Forgets the segments below `segment`, which the buffer has dropped.
    pub(super) fn forget_below(&mut self, segment: u64) {
        // Called for every buffered record: most calls have nothing to forget.
        if self
            .segments
            .first_key_value()
            .is_none_or(|(&first, _)| first >= segment)
        {
            return;
        }
        let kept = self.segments.split_off(&segment);
        let dropped = std::mem::replace(&mut self.segments, kept);
        self.entries -= dropped.values().flatten().map(HashSet::len).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::KeyFilter;

    proptest! {
        /// Never "certainly not" for a (segment, key) that was inserted and not forgotten, nor
        /// for a segment from before the first tracked one, whatever the capacity.
        #[test]
        fn never_denies_a_key_it_received(
            first in 0u64..4,
            capacity in 1usize..20,
            ops in proptest::collection::vec((0u64..8, 0u8..16, any::<bool>()), 1..80),
        ) {
            let mut filter = KeyFilter::new(first, capacity);
            let mut held: BTreeSet<(u64, u8)> = BTreeSet::new();
            for (segment, key, forget) in ops {
                if forget {
                    filter.forget_below(segment);
                    held.retain(|&(s, _)| s >= segment);
                } else {
                    filter.insert(segment, &[key]);
                    held.insert((segment, key));
                }
                for &(s, k) in &held {
                    prop_assert!(filter.may_contain(s, &[k]), "segment {} key {}", s, k);
                }
                for s in 0..first {
                    prop_assert!(filter.may_contain(s, &[255]));
                }
            }
        }
    }

    #[test]
    fn denies_keys_a_tracked_segment_never_received() {
        let mut filter = KeyFilter::new(2, 100);
        filter.insert(2, b"a");
        assert!(filter.may_contain(2, b"a"));
        assert!(!filter.may_contain(2, b"b"));
        assert!(
            !filter.may_contain(3, b"a"),
            "a segment without records holds nothing"
        );
        assert!(
            filter.may_contain(1, b"b"),
            "segments before the first tracked may hold it"
        );
        filter.forget_below(3);
        assert!(!filter.may_contain(2, b"a"));
    }
}
