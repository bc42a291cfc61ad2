//! Idempotent producers: ids, epochs and sequence numbers, as Kafka checks them.
//!
//! An idempotent producer numbers its batches per partition. The broker remembers, per
//! (producer, partition), the epoch and the last five batches it appended (Kafka's
//! `max.in.flight.requests.per.connection` is at most 5 with idempotence), so that:
//! - a batch sent again after a lost response is recognised and answered with the offset it got
//!   the first time, not appended twice;
//! - a batch that skips sequence numbers (an earlier one was lost) is refused with
//!   OUT_OF_ORDER_SEQUENCE_NUMBER, so the producer's order is never broken;
//! - a batch from an older epoch of the producer is refused with INVALID_PRODUCER_EPOCH.
//!
//! The state is in memory. A producer this broker knows nothing of (it restarted) starts
//! afresh at whatever sequence its first batch has, as Kafka does for a producer whose state
//! expired (KIP-360); so a retry in flight across a broker restart may be appended twice.
//! Producer ids start from the clock at startup, so a restarted broker never reissues one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

/// Batches remembered per producer and partition.
const REMEMBERED: usize = 5;

/// What to do with a produced batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sequenced {
    Append,
    /// Already appended at this base offset.
    Duplicate(u64),
    Refuse(i16),
}

/// A batch's producer and sequence numbers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchSeq {
    pub producer: i64,
    pub epoch: i16,
    /// Sequence numbers of its first and last records.
    pub first: i32,
    pub last: i32,
}

#[derive(Default)]
struct ProducerPartition {
    epoch: i16,
    /// (first sequence, last sequence, base offset) of the latest batches, oldest first.
    recent: VecDeque<(i32, i32, u64)>,
}

pub(crate) struct Producers {
    next_id: AtomicI64,
    state: Mutex<HashMap<(i64, String, u32), ProducerPartition>>,
}

impl Producers {
    pub fn new() -> Producers {
        Producers {
            next_id: AtomicI64::new(eddy_log::now_ms().max(1) * 1000),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// A new producer id (epoch 0).
    pub fn allocate(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks a batch's sequence numbers against what the partition saw from its producer.
    pub fn check(&self, seq: BatchSeq, topic: &str, partition: u32) -> Sequenced {
        let BatchSeq {
            producer,
            epoch,
            first,
            last,
        } = seq;
        let state = self.state.lock();
        let Some(known) = state.get(&(producer, topic.to_string(), partition)) else {
            return Sequenced::Append;
        };
        if epoch < known.epoch {
            return Sequenced::Refuse(ResponseError::InvalidProducerEpoch.code());
        }
        if epoch > known.epoch {
            // A bumped epoch starts its sequences again at 0.
            return if first == 0 {
                Sequenced::Append
            } else {
                Sequenced::Refuse(ResponseError::OutOfOrderSequenceNumber.code())
            };
        }
        if let Some(&(_, _, offset)) = known
            .recent
            .iter()
            .find(|&&(f, l, _)| f == first && l == last)
        {
            return Sequenced::Duplicate(offset);
        }
        match known.recent.back() {
            Some(&(_, l, _)) if first != next_sequence(l) => {
                Sequenced::Refuse(ResponseError::OutOfOrderSequenceNumber.code())
            }
            _ => Sequenced::Append,
        }
    }

    /// Remembers a batch appended at `base_offset`.
    pub fn appended(&self, seq: BatchSeq, topic: &str, partition: u32, base_offset: u64) {
        let BatchSeq {
            producer,
            epoch,
            first,
            last,
        } = seq;
        let mut state = self.state.lock();
        let known = state
            .entry((producer, topic.to_string(), partition))
            .or_default();
        if epoch != known.epoch {
            known.epoch = epoch;
            known.recent.clear();
        }
        if known.recent.len() == REMEMBERED {
            known.recent.pop_front();
        }
        known.recent.push_back((first, last, base_offset));
    }

    /// Forgets the producers of a deleted topic.
    pub fn forget_topic(&self, topic: &str) {
        self.state.lock().retain(|(_, t, _), _| t != topic);
    }
}

/// Sequences wrap from `i32::MAX` to 0.
fn next_sequence(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(producer: i64, epoch: i16, first: i32, last: i32) -> BatchSeq {
        BatchSeq {
            producer,
            epoch,
            first,
            last,
        }
    }

    #[test]
    fn duplicates_gaps_and_old_epochs() {
        let p = Producers::new();
        let id = p.allocate();
        assert_ne!(id, p.allocate());
        assert_eq!(p.check(seq(id, 0, 0, 9), "t", 0), Sequenced::Append);
        p.appended(seq(id, 0, 0, 9), "t", 0, 100);
        assert_eq!(p.check(seq(id, 0, 0, 9), "t", 0), Sequenced::Duplicate(100));
        assert_eq!(p.check(seq(id, 0, 10, 19), "t", 0), Sequenced::Append);
        let gap = p.check(seq(id, 0, 11, 19), "t", 0);
        assert_eq!(
            gap,
            Sequenced::Refuse(ResponseError::OutOfOrderSequenceNumber.code())
        );
        // Another partition has its own sequences.
        assert_eq!(p.check(seq(id, 0, 0, 0), "t", 1), Sequenced::Append);
        p.appended(seq(id, 1, 0, 0), "t", 0, 200);
        let stale = p.check(seq(id, 0, 10, 19), "t", 0);
        assert_eq!(
            stale,
            Sequenced::Refuse(ResponseError::InvalidProducerEpoch.code())
        );
        p.appended(seq(id, 1, 1, i32::MAX), "t", 0, 201);
        assert_eq!(
            p.check(seq(id, 1, 0, 5), "t", 0),
            Sequenced::Append,
            "wraps to 0"
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let p = Producers::new();
        for i in 0..7 {
            p.appended(seq(1, 0, i, i), "t", 0, i as u64);
        }
        assert_eq!(p.check(seq(1, 0, 6, 6), "t", 0), Sequenced::Duplicate(6));
        assert_eq!(p.check(seq(1, 0, 2, 2), "t", 0), Sequenced::Duplicate(2));
        assert_eq!(
            p.check(seq(1, 0, 1, 1), "t", 0),
            Sequenced::Refuse(ResponseError::OutOfOrderSequenceNumber.code())
        );
    }
}
