//! Compaction reads the whole partition, so it waits until enough is new to pay for it.

mod common;

use std::time::{Duration, SystemTime};

use common::{open, rec};
use eddy_log::TopicConfig;

#[test]
fn a_pass_waits_until_half_the_partition_is_new_or_tombstones_may_expire() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = TopicConfig {
        compact: true,
        segment_bytes: 1024,
        delete_retention_ms: 60_000,
        ..TopicConfig::default()
    };
    let t = log.create_topic("c", config).unwrap();
    let p = t.partition(0).unwrap().clone();
    let update = |n: usize| {
        for i in 0..n {
            p.append(&[rec(Some("k"), Some(&format!("{i:040}")), 0)])
                .unwrap();
        }
    };
    update(100);
    let now = SystemTime::now();
    assert!(
        p.compact(now).unwrap().records_removed > 0,
        "the first pass runs"
    );
    // A few new records (a few segments' worth): not worth reading the partition again.
    update(30);
    assert_eq!(p.compact(now).unwrap().records_removed, 0);
    // Once the delete retention has passed, a pass runs whatever is new.
    let later = now + Duration::from_secs(61);
    assert!(p.compact(later).unwrap().records_removed > 0);
    // As many new offsets as the partition held: it runs again.
    update(10);
    assert_eq!(p.compact(later).unwrap().records_removed, 0);
    update(200);
    assert!(p.compact(later).unwrap().records_removed > 0);
}
