//! A topic's only reader drops what it has consumed, a whole segment at a time.

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
