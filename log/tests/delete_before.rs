//! A topic's owner drops its head, a whole segment at a time: what its only reader has
//! consumed, or what is older than it needs.

mod common;

use common::{open, read_all, rec};
use eddy_log::TopicConfig;

#[test]
fn deletes_only_sealed_segments_wholly_below_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = TopicConfig {
        segment_bytes: 1024,
        ..TopicConfig::default()
    };
    let t = log.create_topic("r", config).unwrap();
    let p = t.partition(0).unwrap().clone();
    for i in 0..100 {
        p.append(&[rec(None, Some(&format!("value-{i:04}")), i)])
            .unwrap();
    }
    let segments = p.segment_count();
    assert!(segments > 3);
    assert_eq!(p.delete_before(0).unwrap(), 0);
    let deleted = p.delete_before(50).unwrap();
    assert!(deleted > 0);
    assert_eq!(p.segment_count(), segments - deleted);
    let left = read_all(&t, 0);
    assert!(p.start_offset() <= 50, "offset 50 is still readable");
    assert_eq!(left.first().unwrap().offset, p.start_offset());
    assert_eq!(left.last().unwrap().offset, 99);
    // Everything consumed: the active segment stays.
    p.delete_before(100).unwrap();
    assert_eq!(p.segment_count(), 1);
    assert_eq!(read_all(&t, 0).last().unwrap().offset, 99);
}

#[test]
fn deletes_older_than_a_time_from_the_oldest_segment_until_one_holds_a_newer_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = TopicConfig {
        segment_bytes: 1024,
        ..TopicConfig::default()
    };
    let t = log.create_topic("w", config).unwrap();
    let p = t.partition(0).unwrap().clone();
    // Times follow offsets, but for one late-stamped record at offset 40.
    for i in 0..100 {
        let time = if i == 40 { 10_000 } else { i };
        p.append(&[rec(None, Some(&format!("value-{i:04}")), time)])
            .unwrap();
    }
    assert_eq!(p.delete_older_than(0).unwrap(), 0);
    assert!(p.delete_older_than(90).unwrap() > 0);
    // The segment holding offset 40 stays, and so does everything after it.
    let left = read_all(&t, 0);
    assert!(p.start_offset() <= 40 && p.start_offset() > 0);
    assert_eq!(left.first().unwrap().offset, p.start_offset());
    assert_eq!(left.len() as u64, 100 - p.start_offset());
}
