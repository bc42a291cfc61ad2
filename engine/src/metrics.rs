//! Per-query throughput: counters a query's task updates as it runs and any thread reads
//! (SHOW QUERIES, DESCRIBE EXTENDED, the server's `/metrics`).
//!
//! A [`RateCounter`] keeps a lifetime total and the counts of the last [`WINDOW_SECS`] seconds
//! in one bucket per second, so a rate reflects what the query does now, not since it started,
//! and reading it never blocks the writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many seconds a rate averages over.
pub const WINDOW_SECS: u64 = 60;

/// A count with a recent rate. Updated by one writer (the query's task); a reader racing a
/// bucket's reset may see that second's count slightly off, which a displayed rate tolerates.
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

/// What a running query has done: records read from its source and written to its sink, and
/// how far it has read each partition of its source (for lag).
#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub records_in: RateCounter,
    pub records_out: RateCounter,
    positions: Box<[AtomicU64]>,
}

impl QueryMetrics {
    /// Metrics of a query that starts reading its source's partitions at `positions`.
    pub fn starting_at(positions: &[u64]) -> QueryMetrics {
        QueryMetrics {
            positions: positions.iter().map(|&p| AtomicU64::new(p)).collect(),
            ..Default::default()
        }
    }

    /// The next offset the query reads in `partition` (after what it processed).
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.positions
            .get(partition as usize)
            .map(|p| p.load(Ordering::Acquire))
    }

    pub(crate) fn set_position(&self, partition: u32, position: u64) {
        if let Some(p) = self.positions.get(partition as usize) {
            p.store(position, Ordering::Release);
        }
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
