//! Pending records: written by an exactly-once writer, unreadable until its commit makes them
//! visible, and cut off without a reader ever having seen them if it never does.

mod common;

use std::time::{Duration, SystemTime};

use common::{open, read_all, rec};
use eddy_log::{Record, TopicConfig};
use proptest::prelude::*;

fn values(records: &[eddy_log::StoredRecord]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| {
            let v = r.record.value.as_deref().unwrap_or_default();
            (r.offset, String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

#[test]
fn pending_records_are_read_only_once_made_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(None, Some("a"), 1)]).unwrap();
    let info = p
        .append_pending(&[rec(None, Some("b"), 2), rec(None, Some("c"), 3)])
        .unwrap();
    assert_eq!((info.base_offset, info.count), (1, 2));
    assert_eq!((p.end_offset(), p.written_offset()), (1, 3));
    assert_eq!(values(&read_all(&t, 0)), vec![(0, "a".into())]);
    assert!(!p.wait_for_data_blocking(1, Some(Duration::from_millis(10))));

    p.make_visible(2);
    assert_eq!(values(&read_all(&t, 0)).len(), 2);
    assert!(p.wait_for_data_blocking(1, Some(Duration::from_millis(10))));
    // Never past what was written.
    p.make_visible(100);
    assert_eq!(p.end_offset(), 3);
    assert_eq!(values(&read_all(&t, 0)).len(), 3);
}

#[test]
fn truncating_drops_pending_records_no_reader_saw() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append_pending(&[rec(None, Some("a"), 1)]).unwrap();
    p.make_visible(1);
    p.append_pending(&[rec(None, Some("lost"), 2)]).unwrap();
    assert_eq!(p.truncate_to(1).unwrap(), 1);
    assert_eq!((p.end_offset(), p.written_offset()), (1, 1));
    let again = p.append_pending(&[rec(None, Some("again"), 2)]).unwrap();
    assert_eq!(again.base_offset, 1, "the cut offsets are reused");
    p.make_visible(again.next_offset());
    assert_eq!(
        values(&read_all(&t, 0)),
        vec![(0, "a".into()), (1, "again".into())]
    );
}

#[test]
fn an_ordinary_append_makes_pending_records_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append_pending(&[rec(None, Some("pending"), 1)]).unwrap();
    p.append(&[rec(None, Some("plain"), 2)]).unwrap();
    assert_eq!(
        values(&read_all(&t, 0)),
        vec![(0, "pending".into()), (1, "plain".into())]
    );
}

#[test]
fn a_reopened_partition_reads_what_a_crashed_writer_left_pending() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let t = log.create_topic("t", TopicConfig::default()).unwrap();
        let p = t.partition(0).unwrap().clone();
        p.append_pending(&[rec(None, Some("left"), 1)]).unwrap();
        p.flush().unwrap();
    }
    // Until the writer's recovery decides, with its commit, whether to cut it.
    let log = open(dir.path());
    let t = log.topic("t").unwrap();
    assert_eq!(values(&read_all(&t, 0)), vec![(0, "left".into())]);
}

#[test]
fn compaction_keeps_values_that_pending_records_would_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = TopicConfig {
        compact: true,
        segment_bytes: 1024,
        ..TopicConfig::default()
    };
    let t = log.create_topic("c", config).unwrap();
    let p = t.partition(0).unwrap().clone();
    for i in 0..60 {
        p.append(&[rec(Some(&format!("k{i}")), Some("old"), i)])
            .unwrap();
    }
    let visible = p.end_offset();
    for i in 0..60 {
        p.append_pending(&[rec(Some(&format!("k{i}")), Some("new"), 100 + i)])
            .unwrap();
    }
    assert!(
        p.segment_count() > 3,
        "pending records span sealed segments"
    );
    p.compact(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    p.truncate_to(visible).unwrap();
    let left = values(&read_all(&t, 0));
    assert_eq!(left.len(), 60);
    assert!(left.iter().all(|(_, v)| v == "old"));
}

#[derive(Clone, Debug)]
enum Op {
    Append(u8),
    AppendPending(u8),
    /// Makes this many of the pending appends visible (a writer's commit).
    Publish(u8),
    /// Keeps this many of the pending appends (a recovery cutting back to a commit).
    Truncate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..20).prop_map(Op::Append),
        (1u8..6).prop_map(Op::AppendPending),
        (0u8..3).prop_map(Op::Publish),
        (0u8..3).prop_map(Op::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Readers see exactly the records a model of visible and pending records holds, after
    /// any interleaving of appends, publishing and truncation.
    #[test]
    fn readers_see_exactly_the_visible_records(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let t = log
            .create_topic("m", TopicConfig { segment_bytes: 1024, ..TopicConfig::default() })
            .unwrap();
        let p = t.partition(0).unwrap().clone();
        let mut visible: Vec<String> = Vec::new();
        let mut pending: Vec<Vec<String>> = Vec::new();
        let mut next = 0;
        let mut make = |n: u8| -> Vec<Record> {
            (0..n).map(|_| { next += 1; rec(None, Some(&format!("v{next}")), next) }).collect()
        };
        let text = |r: &Record| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned();
        for op in ops {
            match op {
                Op::Append(n) => {
                    let records = make(n);
                    p.append(&records).unwrap();
                    visible.extend(pending.drain(..).flatten());
                    visible.extend(records.iter().map(text));
                }
                Op::AppendPending(n) => {
                    let records = make(n);
                    p.append_pending(&records).unwrap();
                    pending.push(records.iter().map(text).collect());
                }
                Op::Publish(n) => {
                    let n = (n as usize).min(pending.len());
                    let records: usize = pending[..n].iter().map(Vec::len).sum();
                    p.make_visible(p.end_offset() + records as u64);
                    visible.extend(pending.drain(..n).flatten());
                }
                Op::Truncate(n) => {
                    let n = (n as usize).min(pending.len());
                    let records: usize = pending[..n].iter().map(Vec::len).sum();
                    p.truncate_to(p.end_offset() + records as u64).unwrap();
                    pending.truncate(n);
                }
            }
            let read: Vec<String> = values(&read_all(&t, 0)).into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&read, &visible);
            prop_assert_eq!(p.end_offset(), visible.len() as u64);
            let written = visible.len() + pending.iter().map(Vec::len).sum::<usize>();
            prop_assert_eq!(p.written_offset(), written as u64);
        }
    }
}
