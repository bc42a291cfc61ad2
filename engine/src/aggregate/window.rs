//! Window arithmetic on event time, with Kafka Streams' semantics.
//!
//! * **Tumbling** `SIZE s`: a record at `ts` is in the one window starting at `ts - ts % s`.
//! * **Hopping** `SIZE s, ADVANCE BY a`: a record is in every window `[start, start + s)` with
//!   `start` a multiple of `a` and `start <= ts < start + s`, in ascending order of start.
//! * **Session** `gap`: a record joins (and merges) every session of its key that ends no more
//!   than `gap` before it or starts no more than `gap` after it; a session runs from its first to
//!   its last record's time, both inclusive.
//!
//! Windows close on **stream time**, the largest timestamp the query's task has seen (of its own
//! partition, including the record being processed; see `crate::task`): a window whose
//! `end + grace <= stream time` takes no more records.
//! A time window's end is exclusive; a session's end is its last record's time.

/// Kafka Streams' grace period when a query gives none: 24 hours.
pub const DEFAULT_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// The kind and size of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, advance: i64 },
    Session { gap: i64 },
}

/// A `WINDOW` clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub grace_ms: i64,
    /// How long a window's state is kept after its end, for pull queries; at least its size
    /// plus grace.
    pub retention_ms: Option<i64>,
    /// EMIT FINAL: a window's result is written once, when it closes.
    pub emit_final: bool,
}

impl WindowSpec {
    pub fn new(kind: WindowKind) -> WindowSpec {
        WindowSpec {
            kind,
            grace_ms: DEFAULT_GRACE_MS,
            retention_ms: None,
            emit_final: false,
        }
    }

    /// The time windows (start, end) a record at `ts` falls in, ascending. Empty for sessions.
    pub fn windows_for(&self, ts: i64) -> Vec<(i64, i64)> {
        match self.kind {
            WindowKind::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                vec![(start, start + size)]
            }
            WindowKind::Hopping { size, advance } => {
                let first = (ts - size + advance).max(0);
                let mut start = first - first.rem_euclid(advance);
                if start + size <= ts {
                    start += advance;
                }
                let mut out = Vec::new();
                while start <= ts {
                    out.push((start, start + size));
                    start += advance;
                }
                out
            }
            WindowKind::Session { .. } => Vec::new(),
        }
    }

    /// Whether a window ending at `end` has closed at stream time `stream_time`. A time
    /// window's end is exclusive, a session's inclusive (the time of its last record), so a
    /// session closes only once stream time is past `end + grace`: Kafka Streams' session
    /// aggregate drops a record only when `end < stream time - grace`. Otherwise, with no
    /// grace (EMIT FINAL's default), the record that sets stream time would find its own
    /// session closed.
    pub fn is_closed(&self, end: i64, stream_time: i64) -> bool {
        let closes = end.saturating_add(self.grace_ms);
        match self.kind {
            WindowKind::Session { .. } => closes < stream_time,
            _ => closes <= stream_time,
        }
    }

    pub fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }

    /// The window size for time windows (sessions have none).
    pub fn size(&self) -> Option<i64> {
        match self.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => Some(size),
            WindowKind::Session { .. } => None,
        }
    }

    /// How long after its end a window is kept.
    pub fn retention(&self) -> i64 {
        self.retention_ms
            .unwrap_or(0)
            .max(self.size().unwrap_or(0) + self.grace_ms)
    }
}

/// Whether a record at `ts` belongs with (and so merges) a session `[start, end]`.
pub fn session_overlaps(gap: i64, start: i64, end: i64, ts: i64) -> bool {
    ts >= start.saturating_sub(gap) && ts <= end.saturating_add(gap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_windows_contain_the_record(ts in 0i64..1 << 40, size in 1i64..100_000, step in 1i64..100_000) {
            let advance = step.min(size);
            for spec in [
                WindowSpec::new(WindowKind::Tumbling { size }),
                WindowSpec::new(WindowKind::Hopping { size, advance }),
            ] {
                let ws = spec.windows_for(ts);
                prop_assert!(!ws.is_empty());
                for w in ws.windows(2) {
                    prop_assert!(w[0].0 < w[1].0);
                }
                for (start, end) in &ws {
                    prop_assert!(*start <= ts && ts < *end);
                    prop_assert_eq!(end - start, size);
                }
            }
        }

        #[test]
        fn hopping_windows_are_all_that_contain_the_record(ts in 0i64..1 << 30, size in 1i64..5_000, step in 1i64..5_000) {
            let advance = step.min(size);
            let spec = WindowSpec::new(WindowKind::Hopping { size, advance });
            let expected: Vec<(i64, i64)> = ((ts - size).max(0) / advance..=ts / advance)
                .map(|i| i * advance)
                .filter(|s| *s <= ts && ts < s + size)
                .map(|s| (s, s + size))
                .collect();
            prop_assert_eq!(spec.windows_for(ts), expected);
        }
    }

    #[test]
    fn tumbling_is_aligned_to_the_epoch() {
        let w = WindowSpec::new(WindowKind::Tumbling { size: 30_000 });
        assert_eq!(w.windows_for(89_999), vec![(60_000, 90_000)]);
        assert!(!w.is_closed(30_000, 30_000 + DEFAULT_GRACE_MS - 1));
        assert!(w.is_closed(30_000, 30_000 + DEFAULT_GRACE_MS));
    }

    #[test]
    fn a_session_closes_only_after_its_inclusive_end_plus_grace() {
        let mut w = WindowSpec::new(WindowKind::Session { gap: 50 });
        w.grace_ms = 0;
        assert!(
            !w.is_closed(1_000, 1_000),
            "the record at the end keeps it open"
        );
        assert!(w.is_closed(1_000, 1_001));
        w.grace_ms = 10;
        assert!(!w.is_closed(1_000, 1_010));
        assert!(w.is_closed(1_000, 1_011));
    }
}
