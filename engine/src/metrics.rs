//! Per-query throughput: counters a query's tasks update as they run and any thread reads
//! (SHOW QUERIES, DESCRIBE EXTENDED, the server's `/metrics`); per-task ones are in
//! [`crate::task::TaskMetrics`].
//!
//! A [`RateCounter`] keeps a lifetime total and the counts of the last [`WINDOW_SECS`] seconds
//! in one bucket per second, so a rate reflects what the query does now, not since it started,
//! and reading it never blocks the writer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many seconds a rate averages over.
pub const WINDOW_SECS: u64 = 60;

/// A count with a recent rate. A reader (or another writer) racing a bucket's reset may see
/// or leave that second's count slightly off, which a displayed rate tolerates.
#[derive(Debug)]
pub struct RateCounter {
    total: AtomicU64,
    /// Per bucket: the second it counts (since the epoch) and its count.
    seconds: [AtomicU64; WINDOW_SECS as usize],
    counts: [AtomicU64; WINDOW_SECS as usize],
}

impl Default for RateCounter {
    fn default() -> Self {
        RateCounter {
            total: AtomicU64::new(0),
            seconds: std::array::from_fn(|_| AtomicU64::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RateCounter {
    pub fn add(&self, n: u64) {
        self.add_at(now_secs(), n);
    }

    fn add_at(&self, second: u64, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        let b = (second % WINDOW_SECS) as usize;
        if self.seconds[b].swap(second, Ordering::Relaxed) != second {
            self.counts[b].store(0, Ordering::Relaxed);
        }
        self.counts[b].fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The average per second over the last [`WINDOW_SECS`] seconds.
    pub fn per_second(&self) -> f64 {
        self.per_second_at(now_secs())
    }

    fn per_second_at(&self, now: u64) -> f64 {
        let recent: u64 = (0..WINDOW_SECS as usize)
            .filter(|&b| {
                let s = self.seconds[b].load(Ordering::Relaxed);
                s + WINDOW_SECS > now && s <= now
            })
            .map(|b| self.counts[b].load(Ordering::Relaxed))
            .sum();
        recent as f64 / WINDOW_SECS as f64
    }
}

/// What a running query has done, over all its tasks: records read from its sources and
/// written to its sink, and how far it has read (and committed) each partition of each topic
/// it reads, its repartition topics included (for lag).
///
/// Several tasks add to the counters from their threads; totals are exact, a one-second
/// bucket's count may lose an addition that races its reset, which a displayed rate tolerates.
#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub records_in: RateCounter,
    pub records_out: RateCounter,
    positions: parking_lot::Mutex<BTreeMap<(String, u32), Arc<AtomicU64>>>,
}

impl QueryMetrics {
    pub fn new() -> QueryMetrics {
        QueryMetrics::default()
    }

    /// The next offset the query reads in `partition` of `topic` (after what it processed and
    /// committed), if it reads that partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions
            .lock()
            .get(&(topic.to_string(), partition))
            .map(|p| p.load(Ordering::Acquire))
    }

    /// Every partition the query reads, with its position in it, by topic and partition.
    pub fn positions(&self) -> Vec<(String, u32, u64)> {
        self.positions
            .lock()
            .iter()
            .map(|((t, p), at)| (t.clone(), *p, at.load(Ordering::Acquire)))
            .collect()
    }

    /// The slot a task keeps its position in `partition` of `topic` in, starting at `at`.
    pub(crate) fn slot(&self, topic: &str, partition: u32, at: u64) -> Arc<AtomicU64> {
        self.positions
            .lock()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Arc::new(AtomicU64::new(at)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_counts_only_the_last_window() {
        let c = RateCounter::default();
        c.add_at(1_000, 60);
        c.add_at(1_030, 60);
        assert_eq!(c.total(), 120);
        assert_eq!(c.per_second_at(1_030), 2.0);
        // 1_000 falls out of the window; 1_030 is still in it.
        assert_eq!(c.per_second_at(1_060), 1.0);
        assert_eq!(c.per_second_at(1_200), 0.0);
        // A bucket reused a window later starts from zero.
        c.add_at(1_060, 6);
        assert_eq!(c.per_second_at(1_060), 66.0 / 60.0);
    }
}
