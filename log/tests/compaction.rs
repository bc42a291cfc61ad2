//! Compaction of compacted topics: only each key's latest record survives in sealed segments,
//! tombstones go once `delete_retention_ms` has passed, and surviving records keep their
//! offsets.

mod common;

use std::time::{Duration, SystemTime};

use common::{open, read_all, rec, small_segments};
use eddy_log::TopicConfig;
use proptest::prelude::*;

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        compact: true,
        delete_retention_ms: 0,
        ..small_segments(1)
    };
    let t = log.create_topic("cmp", cfg).unwrap();
    let p = t.partition(0).unwrap().clone();
    assert!(
        p.append(&[rec(None, Some("v"), 0)]).is_err(),
        "keys are required"
    );
    for i in 0..300 {
        p.append(&[rec(Some(&format!("k{}", i % 10)), Some(&format!("{i}")), i)])
            .unwrap();
    }
    p.append(&[rec(Some("k3"), None, 300)]).unwrap();
    for i in 0..100 {
        p.append(&[rec(Some("filler"), Some(&format!("{i}")), 400 + i)])
            .unwrap();
    }
    let stats = p
        .compact(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert!(stats.records_removed > 250, "{stats:?}");
    let all = read_all(&t, 0);
    for k in 0..10 {
        let key = format!("k{k}");
        let versions: Vec<_> = all
            .iter()
            .filter(|r| r.record.key.as_deref() == Some(key.as_bytes()))
            .collect();
        if k == 3 {
            assert!(
                versions.is_empty(),
                "the expired tombstone and all k3 values are gone"
            );
        } else {
            assert_eq!(versions.len(), 1, "{key}");
            assert_eq!(
                versions[0].record.value.as_deref(),
                Some(format!("{}", 290 + k).as_bytes())
            );
        }
    }
    assert!(
        all.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets are kept in order"
    );
    // Compacted data survives a restart, and a read from offset 0 skips the gaps.
    let ends = p.end_offset();
    drop((p, t, log));
    let log = open(dir.path());
    let t = log.topic("cmp").unwrap();
    assert_eq!(read_all(&t, 0), all);
    assert_eq!(t.partition(0).unwrap().end_offset(), ends);
}

#[test]
fn compaction_keeps_tombstones_until_the_delay_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cfg = TopicConfig {
        compact: true,
        delete_retention_ms: 3_600_000,
        ..small_segments(1)
    };
    let t = log.create_topic("cmp", cfg).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(Some("gone"), Some("v"), 0), rec(Some("gone"), None, 1)])
        .unwrap();
    for i in 0..100 {
        p.append(&[rec(Some("x"), Some(&"z".repeat(30)), i)])
            .unwrap();
    }
    p.compact(SystemTime::now()).unwrap();
    let tomb: Vec<_> = read_all(&t, 0)
        .into_iter()
        .filter(|r| r.record.key.as_deref() == Some(&b"gone"[..]))
        .collect();
    assert_eq!(tomb.len(), 1);
    assert!(tomb[0].record.value.is_none());
    p.compact(SystemTime::now() + Duration::from_secs(7200))
        .unwrap();
    assert!(read_all(&t, 0)
        .iter()
        .all(|r| r.record.key.as_deref() != Some(&b"gone"[..])));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the interleaving of updates and deletes, compaction leaves exactly the latest
    /// record of each key (tombstones gone once expired) and changes no surviving record.
    #[test]
    fn compaction_matches_a_model(ops in proptest::collection::vec((0u8..8, proptest::option::of(0u32..1000)), 1..300)) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let t = log.create_topic("m", TopicConfig { compact: true, delete_retention_ms: 0, segment_bytes: 1024, ..TopicConfig::default() }).unwrap();
        let p = t.partition(0).unwrap().clone();
        let mut model = std::collections::BTreeMap::new();
        for (i, (k, v)) in ops.iter().enumerate() {
            let key = format!("key{k}");
            let val = v.map(|v| v.to_string());
            p.append(&[rec(Some(&key), val.as_deref(), i as i64)]).unwrap();
            model.insert(key, (i as u64, val));
        }
        p.compact(SystemTime::now() + Duration::from_secs(1)).unwrap();
        let after = read_all(&t, 0);
        // Every latest record is still there, unchanged (tombstones may be gone).
        for (key, (offset, val)) in &model {
            let found = after.iter().find(|r| r.offset == *offset);
            match (found, val) {
                (Some(r), _) => {
                    prop_assert_eq!(r.record.key.as_deref(), Some(key.as_bytes()));
                    prop_assert_eq!(r.record.value.as_deref(), val.as_deref().map(str::as_bytes));
                }
                (None, None) => {}
                (None, Some(_)) => prop_assert!(false, "latest value of {} lost", key),
            }
        }
        // Nothing superseded survives in sealed segments: any record that is not the latest of
        // its key must be in the active segment (which compaction never touches).
        let active_start = after.iter().map(|r| r.offset).max().map_or(0, |_| {
            // The active segment starts at the last segment's base offset.
            let names: Vec<u64> = std::fs::read_dir(dir.path().join("topics/m/0")).unwrap()
                .filter_map(|e| eddy_log::segment::parse_log_file_name(&e.unwrap().file_name().to_string_lossy()))
                .collect();
            names.into_iter().max().unwrap()
        });
        for r in &after {
            let key = std::str::from_utf8(r.record.key.as_deref().unwrap()).unwrap();
            if model[key].0 != r.offset {
                prop_assert!(r.offset >= active_start, "superseded offset {} in a sealed segment", r.offset);
            } else if r.record.value.is_none() {
                prop_assert!(r.offset >= active_start, "expired tombstone at {} kept", r.offset);
            }
        }
    }
}
