//! Transactions: records written by exactly-once writers, several at once, readable only up to
//! the last stable offset and only once their writer commits, never if it aborts, and settled
//! after a crash by whoever knows each writer's commit point.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{open, read_all, rec};
use eddy_log::{writer_id, Partition, Record, TopicConfig, Undecided};
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

fn texts(p: &Arc<Partition>) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = p.start_offset();
    loop {
        let batch = p.read(at, eddy_log::ReadLimits::default()).unwrap();
        let Some(last) = batch.last() else { break };
        at = last.offset + 1;
        out.extend(values(&batch).into_iter().map(|(_, v)| v));
    }
    out
}

#[test]
fn a_transactions_records_are_read_only_once_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(None, Some("a"), 1)]).unwrap();
    let mut txn = p.begin(writer_id("w"));
    let info = txn
        .append(&[rec(None, Some("b"), 2), rec(None, Some("c"), 3)])
        .unwrap();
    assert_eq!((info.base_offset, info.count), (1, 2));
    assert_eq!(txn.end(), Some(3));
    assert_eq!((p.end_offset(), p.written_offset()), (1, 3));
    assert_eq!(values(&read_all(&t, 0)), vec![(0, "a".into())]);
    assert!(!p.wait_for_data_blocking(1, Some(Duration::from_millis(10))));
    txn.commit().unwrap();
    assert_eq!(values(&read_all(&t, 0)).len(), 3);
    assert!(p.wait_for_data_blocking(1, Some(Duration::from_millis(10))));
}

#[test]
fn an_aborted_or_dropped_transaction_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        let t = log.create_topic("t", TopicConfig::default()).unwrap();
        let p = t.partition(0).unwrap().clone();
        let w = writer_id("w");
        let mut txn = p.begin(w);
        txn.append(&[rec(None, Some("a"), 1)]).unwrap();
        txn.commit().unwrap();
        let mut txn = p.begin(w);
        txn.append(&[rec(None, Some("lost"), 2)]).unwrap();
        txn.abort().unwrap();
        {
            let mut txn = p.begin(w);
            txn.append(&[rec(None, Some("dropped"), 2)]).unwrap();
        }
        p.append(&[rec(None, Some("plain"), 3)]).unwrap();
        let mut txn = p.begin(w);
        txn.append(&[rec(None, Some("again"), 2)]).unwrap();
        txn.commit().unwrap();
        // Offsets are never reused: the aborted ones are skipped.
        assert_eq!(
            values(&read_all(&t, 0)),
            vec![(0, "a".into()), (3, "plain".into()), (4, "again".into())]
        );
    }
    // The aborted list is durable: a reopened partition still skips them.
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert!(p.undecided().is_empty());
    assert_eq!(texts(&p), ["a", "plain", "again"]);
}

#[test]
fn writers_interleave_and_each_is_read_once_every_earlier_one_has_decided() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    let (mut a, mut b) = (p.begin(writer_id("a")), p.begin(writer_id("b")));
    a.append(&[rec(None, Some("a1"), 1)]).unwrap();
    b.append(&[rec(None, Some("b1"), 2)]).unwrap();
    // A plain append does not wait for the open transactions.
    p.append(&[rec(None, Some("plain"), 3)]).unwrap();
    a.append(&[rec(None, Some("a2"), 4)]).unwrap();
    b.commit().unwrap();
    // b committed, but a (open since before it) holds the stable offset back.
    assert!(texts(&p).is_empty());
    assert_eq!(p.end_offset(), 0);
    a.commit().unwrap();
    assert_eq!(texts(&p), ["a1", "b1", "plain", "a2"]);
}

/// Leaves writer `w`'s second transaction on partition 0 of `t` open as a crash would (its
/// first committed), with writer `x`'s committed records after it; returns the offset where
/// `w`'s first transaction ends.
fn crash_mid_transaction(dir: &std::path::Path, w: u64, x: u64) -> u64 {
    let log = open(dir);
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(None, Some("before"), 1)]).unwrap();
    let mut first = p.begin(w);
    first.append(&[rec(None, Some("w1"), 2)]).unwrap();
    let committed_end = first.end().unwrap();
    let mut open_one = p.begin(w);
    open_one.append(&[rec(None, Some("w2"), 3)]).unwrap();
    let mut other = p.begin(x);
    other.append(&[rec(None, Some("x1"), 4)]).unwrap();
    // w's first commit reached its state, not the log; x committed in full.
    other.commit().unwrap();
    p.flush().unwrap();
    // Neither committed nor aborted: what a SIGKILL leaves.
    std::mem::forget(first);
    std::mem::forget(open_one);
    committed_end
}

#[test]
fn a_crash_leaves_open_transactions_hidden_until_each_writer_is_settled() {
    let (w, x) = (writer_id("CTAS_X_0/0"), writer_id("CTAS_X_0/1"));
    let dir = tempfile::tempdir().unwrap();
    let committed_end = crash_mid_transaction(dir.path(), w, x);
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    // Both of w's transactions are undecided; x committed (past w's first offset), which the
    // partition recorded, so it waits only behind w.
    assert_eq!(
        p.undecided(),
        [Undecided {
            writer: w,
            start: 1,
            end: 3
        }]
    );
    assert_eq!(log.undecided().len(), 1);
    assert_eq!(texts(&p), ["before"]);
    // Plain appends go on, readable once everything before them is settled.
    p.append(&[rec(None, Some("after"), 5)]).unwrap();
    assert_eq!(texts(&p), ["before"]);
    // w's last commit recorded the end of its first transaction: the second is cut.
    p.resolve(w, committed_end).unwrap();
    assert_eq!(texts(&p), ["before", "w1", "x1", "after"]);
    drop(p);
    drop(log);
    // Settled for good: a reopen finds nothing to decide, and still skips w's second.
    let log = open(dir.path());
    assert!(log.undecided().is_empty());
    assert_eq!(
        texts(&log.partition("t", 0).unwrap()),
        ["before", "w1", "x1", "after"]
    );
}

#[test]
fn compaction_drops_aborted_records_and_keeps_what_open_ones_would_shadow() {
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
    let mut aborted = p.begin(writer_id("aborted"));
    for i in 0..30 {
        aborted
            .append(&[rec(Some(&format!("k{i}")), Some("aborted"), 100 + i)])
            .unwrap();
    }
    aborted.abort().unwrap();
    let mut open_one = p.begin(writer_id("open"));
    for i in 0..60 {
        open_one
            .append(&[rec(Some(&format!("k{i}")), Some("new"), 200 + i)])
            .unwrap();
    }
    assert!(p.segment_count() > 3, "the records span sealed segments");
    p.compact(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    open_one.abort().unwrap();
    let left = values(&read_all(&t, 0));
    assert_eq!(left.len(), 60);
    assert!(left.iter().all(|(_, v)| v == "old"), "{left:?}");
}

#[derive(Clone, Debug)]
enum Op {
    Plain(u8),
    /// Writer (of 3) appends this many records in its transaction.
    Append(u8, u8),
    Commit(u8),
    Abort(u8),
    /// The process dies; on reopen each undecided writer is kept (its commit covered it) or
    /// not, by the flags.
    Crash([bool; 3]),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..6).prop_map(Op::Plain),
        ((0u8..3), (1u8..6)).prop_map(|(w, n)| Op::Append(w, n)),
        (0u8..3).prop_map(Op::Commit),
        (0u8..3).prop_map(Op::Abort),
        any::<[bool; 3]>().prop_map(Op::Crash),
    ]
}

/// A record as the model knows it: its text, and whose transaction (if any) wrote it.
#[derive(Clone)]
struct Written {
    text: String,
    state: State,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Plain,
    Open(u8),
    Committed,
    Aborted,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Readers see exactly the plain records and the committed (or kept) transactions' records
    /// below the first open transaction, in the order written, after any interleaving of
    /// writers, commits, aborts and crashes.
    #[test]
    fn readers_see_exactly_the_decided_records(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig { segment_bytes: 1024, ..TopicConfig::default() };
        open(dir.path()).create_topic("m", config).unwrap();
        let mut log = open(dir.path());
        let mut model: Vec<Written> = Vec::new();
        let mut open_txns: BTreeMap<u8, eddy_log::Transaction> = BTreeMap::new();
        // Where each writer's last committed transaction ends: what its commit records.
        let mut committed_end = [0u64; 3];
        let mut next = 0;
        let mut make = |n: u8| -> Vec<Record> {
            (0..n).map(|_| { next += 1; rec(None, Some(&format!("v{next}")), next) }).collect()
        };
        let text = |r: &Record| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned();
        let name = |w: u8| writer_id(&format!("w{w}"));
        for op in ops {
            let p = log.partition("m", 0).unwrap();
            match op {
                Op::Plain(n) => {
                    let records = make(n);
                    p.append(&records).unwrap();
                    model.extend(records.iter().map(|r| Written { text: text(r), state: State::Plain }));
                }
                Op::Append(w, n) => {
                    let records = make(n);
                    let txn = open_txns.entry(w).or_insert_with(|| p.begin(name(w)));
                    txn.append(&records).unwrap();
                    model.extend(records.iter().map(|r| Written { text: text(r), state: State::Open(w) }));
                }
                Op::Commit(w) | Op::Abort(w) => {
                    let commit = matches!(op, Op::Commit(_));
                    if let Some(txn) = open_txns.remove(&w) {
                        match commit {
                            true => {
                                committed_end[w as usize] = txn.end().unwrap();
                                txn.commit().unwrap()
                            }
                            false => txn.abort().unwrap(),
                        }
                    }
                    let to = if commit { State::Committed } else { State::Aborted };
                    for r in model.iter_mut().filter(|r| r.state == State::Open(w)) {
                        r.state = to;
                    }
                }
                Op::Crash(keep) => {
                    p.flush().unwrap();
                    let mut open_at_crash = [false; 3];
                    for (w, txn) in std::mem::take(&mut open_txns) {
                        open_at_crash[w as usize] = true;
                        std::mem::forget(txn);
                    }
                    drop(p);
                    drop(log);
                    log = open(dir.path());
                    let p = log.partition("m", 0).unwrap();
                    for u in p.undecided() {
                        let w = (0..3u8).find(|&w| name(w) == u.writer).unwrap() as usize;
                        // An open transaction kept: its commit recorded its end; cut: the
                        // end of its writer's last commit. (A writer's committed records
                        // may be found undecided too, behind another's open transaction.)
                        if open_at_crash[w] && keep[w] {
                            committed_end[w] = u.end;
                        }
                        p.resolve(u.writer, committed_end[w]).unwrap();
                    }
                    // Writers with no open transaction left nothing undecided behind them.
                    for r in &mut model {
                        if let State::Open(w) = r.state {
                            r.state = if keep[w as usize] { State::Committed } else { State::Aborted };
                        }
                    }
                    prop_assert!(p.undecided().is_empty());
                }
            }
            let p = log.partition("m", 0).unwrap();
            let first_open = model.iter().position(|r| matches!(r.state, State::Open(_)));
            let expected: Vec<String> = model[..first_open.unwrap_or(model.len())]
                .iter()
                .filter(|r| matches!(r.state, State::Plain | State::Committed))
                .map(|r| r.text.clone())
                .collect();
            prop_assert_eq!(texts(&p), expected);
            prop_assert_eq!(p.end_offset(), first_open.unwrap_or(model.len()) as u64);
        }
    }
}

#[test]
fn a_failed_first_append_holds_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    let mut txn = p.begin(writer_id("w"));
    let huge = "x".repeat(eddy_log::MAX_RECORD_BYTES + 1);
    assert!(txn.append(&[rec(None, Some(&huge), 1)]).is_err());
    p.append(&[rec(None, Some("plain"), 2)]).unwrap();
    assert_eq!(
        texts(&p),
        ["plain"],
        "the failed transaction holds no offset back"
    );
    drop(txn);
    assert_eq!(texts(&p), ["plain"]);
}

#[test]
fn a_reader_moves_past_aborted_records_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(None, Some("a"), 1)]).unwrap();
    let mut txn = p.begin(writer_id("w"));
    txn.append(&[rec(None, Some("x"), 2), rec(None, Some("y"), 3)])
        .unwrap();
    txn.abort().unwrap();
    let read = p.read_on(1, eddy_log::ReadLimits::default()).unwrap();
    assert!(read.records.is_empty());
    assert_eq!(read.next, 3, "past the aborted records, to the end");
    // A consumer's position moves past them too: it is caught up.
    let mut consumer =
        eddy_log::Consumer::new(&log, &["t"], eddy_log::OffsetReset::Earliest).unwrap();
    let got = consumer.poll(Duration::from_millis(10)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
    let tp = eddy_log::TopicPartition::new("t", 0);
    assert_eq!(consumer.position(&tp).unwrap(), 3);
}
