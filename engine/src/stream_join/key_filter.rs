//! Which join keys each stretch of time of a buffer holds in RocksDB, kept in memory so that a
//! lookup of a key the store cannot have costs no seek.
//!
//! A lookup reads the other side's records of one key in a time range: a RocksDB seek per
//! segment it spans. In most joins many of those seeks find nothing in RocksDB: in an inner
//! join of pairs, the first record of every pair finds nothing at all, and the second often
//! finds its match among the writes since the last commit, which are in memory
//! ([`crate::staged_store::StagedStore`]). The filter answers "maybe" or "certainly not" for
//! a key and a time range, from the keys of the records committed to RocksDB per *bucket* of
//! time (a fraction of the window, so a key's records outside the window do not count):
//!
//! - Records buffered since the last commit are staged ([`KeyFilter::stage`]) and count only
//!   once the commit that writes them is made ([`KeyFilter::commit_staged`]).
//! - A bucket at or before the buffer's observed time when the process started may hold
//!   records the filter never saw, so it always answers "maybe" there.
//! - Keys are kept as 32-bit fingerprints, each with the first and last bucket it has
//!   committed records in: one hash probe answers a lookup, whatever the range spans. A key
//!   with records at both ends of a range but none inside is a "maybe", and so is a
//!   fingerprint collision: either costs a needless read, never a missed match.
//! - Memory is bounded: past `capacity` fingerprints for a side, a bucket that a new
//!   fingerprint could not be added to stops being tracked and answers "maybe" from then on.
//!
//! It is rebuilt (as "maybe" for every old bucket) on restart, so it needs no persistence, and
//! work that is rolled back by a crash takes it down with the process.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};

/// The keys one side's buffer holds in RocksDB, by bucket of time.
pub(super) struct KeyFilter {
    bucket_ms: i64,
    /// The first bucket tracked: earlier ones were (perhaps) written before the process
    /// started.
    first_tracked: i64,
    /// The bucket that [`Span`]s count from: the first one staged.
    base: Option<i64>,
    /// Each tracked fingerprint's buckets with committed records, as first and last.
    stored: HashMap<u32, Span>,
    /// Buckets that some committed record could not be noted for (the filter was full, or the
    /// bucket is too far from `base` for a [`Span`]): "maybe" for every key.
    untracked: BTreeSet<i64>,
    /// (bucket, fingerprint) of the records buffered since the last commit.
    staged: Vec<(i64, u32)>,
    /// Buckets before this one are forgotten.
    forgotten_before: i64,
    capacity: usize,
    hasher: DefaultHashBuilder,
}

/// A fingerprint's first and last bucket, counted from [`KeyFilter::base`]: half the size of
/// two absolute buckets, for a map that may hold millions.
#[derive(Clone, Copy)]
struct Span {
    first: i32,
    last: i32,
}

impl KeyFilter {
    /// A filter with buckets of `bucket_ms` that tracks what is buffered after `observed` (the
    /// buffer's largest time when the process started; `None` for an empty buffer).
    pub(super) fn new(bucket_ms: i64, observed: Option<i64>, capacity: usize) -> KeyFilter {
        let bucket_ms = bucket_ms.max(1);
        KeyFilter {
            bucket_ms,
            first_tracked: observed.map_or(i64::MIN, |t| t.div_euclid(bucket_ms) + 1),
            base: None,
            stored: HashMap::new(),
            untracked: BTreeSet::new(),
            staged: Vec::new(),
            forgotten_before: i64::MIN,
            capacity,
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn bucket(&self, time: i64) -> i64 {
        time.div_euclid(self.bucket_ms)
    }

    fn fingerprint(&self, key: &[u8]) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// `bucket` counted from the base, if that fits a [`Span`].
    fn relative(&self, bucket: i64) -> Option<i32> {
        i32::try_from(bucket.checked_sub(self.base?)?).ok()
    }

    /// Notes that a record with key `key` at `time` was buffered; it counts from the next
    /// [`KeyFilter::commit_staged`].
    pub(super) fn stage(&mut self, key: &[u8], time: i64) {
        let bucket = self.bucket(time);
        if bucket >= self.first_tracked {
            self.base.get_or_insert(bucket);
            self.staged.push((bucket, self.fingerprint(key)));
        }
    }

    /// Counts the staged records as stored: the commit that writes them is being made.
    pub(super) fn commit_staged(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        for &(bucket, fingerprint) in &staged {
            let Some(at) = self.relative(bucket) else {
                self.untracked.insert(bucket);
                continue;
            };
            let full = self.stored.len() >= self.capacity;
            match self.stored.get_mut(&fingerprint) {
                Some(span) => {
                    span.first = span.first.min(at);
                    span.last = span.last.max(at);
                }
                None if full => {
                    self.untracked.insert(bucket);
                }
                None => {
                    self.stored.insert(
                        fingerprint,
                        Span {
                            first: at,
                            last: at,
                        },
                    );
                }
            }
        }
        // The buffer is reused: staging allocates once per side, not once per commit.
        self.staged = staged;
        self.staged.clear();
    }

    /// Whether RocksDB may hold records of `key` with times in `from..=to`.
    pub(super) fn may_be_stored(&self, key: &[u8], from: i64, to: i64) -> bool {
        let (low, high) = (self.bucket(from), self.bucket(to));
        if low < self.first_tracked {
            return true;
        }
        if high < low {
            return false;
        }
        if self.untracked.range(low..=high).next().is_some() {
            return true;
        }
        let Some(span) = self.stored.get(&self.fingerprint(key)) else {
            return false;
        };
        let base = self.base.expect("a base once anything is stored");
        base + i64::from(span.first) <= high && base + i64::from(span.last) >= low
    }

    /// Forgets the buckets wholly before `time`, which lookups no longer read.
    pub(super) fn forget_before(&mut self, time: i64) {
        let bucket = self.bucket(time);
        // Called for every buffered record: most calls have nothing to forget, and the map is
        // swept once per bucket of time, not per record.
        if bucket <= self.forgotten_before {
            return;
        }
        self.forgotten_before = bucket;
        self.untracked = self.untracked.split_off(&bucket);
        if let Some(last) = self.relative(bucket) {
            self.stored.retain(|_, span| span.last >= last);
        } else if self.base.is_some_and(|base| bucket > base) {
            // Past every span there is.
            self.stored.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::KeyFilter;

    #[derive(Clone, Debug)]
    enum Op {
        Stage(i64, u8),
        Commit,
        Forget(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..80, 0u8..16).prop_map(|(t, k)| Op::Stage(t, k)),
            // Further from the first bucket than a span counts.
            (0i64..80, 0u8..16).prop_map(|(t, k)| Op::Stage(t + (1 << 33), k)),
            Just(Op::Commit),
            (0i64..80).prop_map(Op::Forget),
        ]
    }

    proptest! {
        /// Never "certainly not" for a committed record's key over a range that holds its
        /// time, unless forgotten; always "maybe" before the first tracked bucket; whatever
        /// the capacity and bucket size.
        #[test]
        fn never_denies_a_committed_key(
            bucket_ms in 1i64..20,
            observed in proptest::option::of(0i64..30),
            capacity in 1usize..20,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut filter = KeyFilter::new(bucket_ms, observed, capacity);
            let mut staged: Vec<(i64, u8)> = Vec::new();
            let mut held: BTreeSet<(i64, u8)> = BTreeSet::new();
            let mut forgotten_before = i64::MIN;
            for op in ops {
                match op {
                    Op::Stage(t, k) => {
                        filter.stage(&[k], t);
                        staged.push((t, k));
                    }
                    Op::Commit => {
                        filter.commit_staged();
                        held.extend(staged.drain(..));
                    }
                    Op::Forget(t) => {
                        filter.forget_before(t);
                        forgotten_before = forgotten_before.max(t);
                    }
                }
                for &(t, k) in held.iter().filter(|(t, _)| *t >= forgotten_before) {
                    for (from, to) in [(t, t), (t - 3, t + 5), (forgotten_before.max(t - 40), t + 40)] {
                        prop_assert!(filter.may_be_stored(&[k], from, to), "time {} key {} in {}..={}", t, k, from, to);
                    }
                }
                if let Some(o) = observed {
                    prop_assert!(filter.may_be_stored(&[255], o - 1, o));
                }
            }
        }
    }

    #[test]
    fn denies_keys_outside_the_buckets_of_the_range_and_before_the_commit() {
        let mut filter = KeyFilter::new(10, Some(15), 100);
        filter.stage(b"a", 25);
        assert!(!filter.may_be_stored(b"a", 20, 29), "not committed yet");
        filter.commit_staged();
        assert!(filter.may_be_stored(b"a", 20, 29));
        assert!(filter.may_be_stored(b"a", 29, 45));
        assert!(!filter.may_be_stored(b"b", 20, 29), "another key");
        assert!(!filter.may_be_stored(b"a", 30, 45), "a later bucket");
        assert!(
            filter.may_be_stored(b"b", 10, 25),
            "a bucket at the start's observed time may hold anything"
        );
        filter.forget_before(30);
        assert!(!filter.may_be_stored(b"a", 20, 29));
    }

    #[test]
    fn a_bucket_past_the_capacity_answers_maybe() {
        let mut filter = KeyFilter::new(10, None, 2);
        for key in [b"a", b"b", b"c"] {
            filter.stage(key, 5);
        }
        filter.commit_staged();
        assert!(filter.may_be_stored(b"z", 0, 9));
        assert!(!filter.may_be_stored(b"z", 10, 19));
    }
}
