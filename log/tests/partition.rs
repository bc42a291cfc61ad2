mod common;

use bytes::Bytes;
use common::{manual, open, read_all, rec, small_segments};
use eddy_log::{FsyncPolicy, Log, LogError, ReadLimits, Record, TopicConfig};
use proptest::prelude::*;

#[test]
fn appends_read_back_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", small_segments(1)).unwrap();
    let p = t.partition(0).unwrap().clone();
    for i in 0..200 {
        let info = p
            .append(&[rec(
                Some(&format!("k{i}")),
                Some(&format!("value-{i:04}")),
                i,
            )])
            .unwrap();
        assert_eq!(info.base_offset, i as u64);
    }
    assert!(p.segment_count() > 3, "small segments roll");
    let limited = p
        .read(
            10,
            ReadLimits {
                max_records: 5,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
    assert_eq!(
        limited.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let one = p
        .read(
            10,
            ReadLimits {
                max_records: 100,
                max_bytes: 1,
            },
        )
        .unwrap();
    assert!(!one.is_empty(), "at least one record even past max_bytes");
    drop((p, t, log));

    let log = open(dir.path());
    let t = log.topic("t").unwrap();
    let all = read_all(&t, 0);
    assert_eq!(all.len(), 200);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(
            r.record.value.as_deref(),
            Some(format!("value-{i:04}").as_bytes())
        );
    }
    let p = t.partition(0).unwrap().clone();
    assert_eq!(p.end_offset(), 200);
    assert!(matches!(
        p.read(201, ReadLimits::default()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(p.read(200, ReadLimits::default()).unwrap().is_empty());
}

#[test]
fn headers_tombstones_and_null_keys_survive() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("h", TopicConfig::default()).unwrap();
    let mut r = rec(None, None, -5);
    r.headers = vec![
        eddy_log::Header {
            name: "a".into(),
            value: Some(Bytes::from_static(b"1")),
        },
        eddy_log::Header {
            name: "b".into(),
            value: None,
        },
    ];
    t.partition(0).unwrap().append(&[r.clone()]).unwrap();
    drop((t, log));
    let log = open(dir.path());
    assert_eq!(read_all(&log.topic("h").unwrap(), 0)[0].record, r);
}

#[test]
fn data_dir_is_locked_against_a_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(matches!(
        Log::open(dir.path(), manual()),
        Err(LogError::Locked(_))
    ));
    drop(log);
    open(dir.path());
}

#[test]
fn topic_admin_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("a", TopicConfig::with_partitions(2))
        .unwrap();
    assert!(matches!(
        log.create_topic("a", TopicConfig::default()),
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(log.topic("nope"), Err(LogError::UnknownTopic(_))));
    assert!(matches!(
        log.partition("a", 2),
        Err(LogError::UnknownPartition { count: 2, .. })
    ));
    assert!(matches!(
        log.create_topic("bad name", TopicConfig::default()),
        Err(LogError::InvalidTopicName { .. })
    ));
    log.delete_topic("a").unwrap();
    assert!(matches!(log.topic("a"), Err(LogError::UnknownTopic(_))));
    log.create_topic("a", TopicConfig::default()).unwrap();
    assert_eq!(
        log.topic("a").unwrap().partition(0).unwrap().end_offset(),
        0,
        "recreated empty"
    );
}

#[test]
fn corrupt_batch_in_a_sealed_segment_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("c", small_segments(1)).unwrap();
    for i in 0..100 {
        t.partition(0)
            .unwrap()
            .append(&[rec(Some("k"), Some(&"x".repeat(50)), i)])
            .unwrap();
    }
    drop((t, log));
    let seg = dir.path().join("topics/c/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let log = open(dir.path());
    let p = log.partition("c", 0).unwrap();
    // The records before the damaged batch are read; the read after them names what is lost.
    let before = p.read(0, ReadLimits::default()).unwrap();
    assert_eq!(before.len(), 1);
    match p.read(1, ReadLimits::default()) {
        Err(LogError::Corrupt {
            topic,
            partition,
            offsets,
            ..
        }) => assert_eq!((topic.as_str(), partition, offsets), ("c", 0, 1..2)),
        other => panic!("expected a corruption error, got {other:?}"),
    }
    // Later segments are still readable.
    assert!(!p.read(80, ReadLimits::default()).unwrap().is_empty());
}

/// Truncates the last segment at every byte of its last batch: each time, recovery must drop
/// exactly that batch, keep everything before it, and accept appends again.
#[test]
fn recovery_truncates_a_torn_last_batch_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("r", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    for i in 0..5 {
        p.append(&[
            rec(Some("k"), Some(&format!("v{i}")), i),
            rec(None, Some("second"), i),
        ])
        .unwrap();
    }
    let before_last = p.size_bytes();
    // What the recovery point said before the last append: a crash that tears a batch happens
    // before the fsync that would have moved the point past it.
    let point_path = dir.path().join("topics/r/0/recovery-point");
    let point = std::fs::read(&point_path).unwrap();
    p.append(&[rec(Some("last"), Some("batch"), 99)]).unwrap();
    let full = p.size_bytes();
    drop((p, t, log));
    let seg = dir.path().join("topics/r/0/00000000000000000000.log");
    let original = std::fs::read(&seg).unwrap();
    assert_eq!(original.len() as u64, full);
    for cut in before_last..full {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
        std::fs::write(&point_path, &point).unwrap();
        let log = open(dir.path());
        let t = log.topic("r").unwrap();
        let p = t.partition(0).unwrap().clone();
        assert_eq!(p.end_offset(), 10, "cut at {cut}");
        assert_eq!(
            p.recovered_truncation().map(|t| t.bytes_dropped),
            Some(cut - before_last).filter(|&n| n > 0)
        );
        assert_eq!(read_all(&t, 0).len(), 10);
        p.append(&[rec(None, Some("after"), 0)]).unwrap();
        assert_eq!(
            read_all(&t, 0)[10].record.value.as_deref(),
            Some(&b"after"[..])
        );
    }
}

#[test]
fn retention_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let by_bytes = log
        .create_topic(
            "b",
            TopicConfig {
                retention_bytes: Some(4096),
                ..small_segments(1)
            },
        )
        .unwrap();
    let by_time = log
        .create_topic(
            "tm",
            TopicConfig {
                retention_ms: Some(1000),
                ..small_segments(1)
            },
        )
        .unwrap();
    let now = 1_000_000i64;
    for i in 0..300 {
        let r = rec(Some("k"), Some(&"y".repeat(40)), now - 5000 + i);
        by_bytes
            .partition(0)
            .unwrap()
            .append(std::slice::from_ref(&r))
            .unwrap();
        by_time.partition(0).unwrap().append(&[r]).unwrap();
    }
    // Recent records in the time topic's active segment keep it.
    for i in 0..10 {
        by_time
            .partition(0)
            .unwrap()
            .append(&[rec(Some("k"), Some("new"), now + i)])
            .unwrap();
    }
    let pb = by_bytes.partition(0).unwrap().clone();
    let deleted = pb.apply_retention(now).unwrap();
    assert!(deleted > 0);
    assert!(
        pb.size_bytes() >= 4096 && pb.size_bytes() < 4096 + 2048 + 200,
        "size {}",
        pb.size_bytes()
    );
    assert!(pb.start_offset() > 0);
    assert_eq!(
        read_all(&by_bytes, 0).first().unwrap().offset,
        pb.start_offset()
    );
    assert!(matches!(
        pb.read(0, ReadLimits::default()),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    let pt = by_time.partition(0).unwrap().clone();
    pt.apply_retention(now).unwrap();
    let left = read_all(&by_time, 0);
    assert!(left.iter().all(|r| r.record.timestamp >= now - 5000));
    assert_eq!(pt.segment_count(), 1, "only the active segment is left");
    assert_eq!(
        left.last().unwrap().record.value.as_deref(),
        Some(&b"new"[..])
    );
    drop((pb, pt, by_bytes, by_time, log));
    let log = open(dir.path());
    assert!(
        log.partition("b", 0).unwrap().start_offset() > 0,
        "start offset survives a restart"
    );
}

#[test]
fn group_commit_acknowledges_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), eddy_log::LogOptions::default()).unwrap();
    let t = log
        .create_topic(
            "g",
            TopicConfig {
                partitions: 2,
                fsync: Some(FsyncPolicy::IntervalMs(2)),
                ..TopicConfig::default()
            },
        )
        .unwrap();
    std::thread::scope(|s| {
        for w in 0..4u32 {
            let t = &t;
            s.spawn(move || {
                let p = t.partition(w % 2).unwrap();
                for i in 0..50 {
                    let info = p
                        .append(&[rec(Some(&w.to_string()), Some(&i.to_string()), 0)])
                        .unwrap();
                    assert!(p.durable_offset() >= info.next_offset());
                }
            });
        }
    });
    let total: usize = (0..2).map(|p| read_all(&t, p).len()).sum();
    assert_eq!(total, 200);
    // Per producer, order within a partition is append order.
    for p in 0..2 {
        for w in 0..4 {
            let vals: Vec<i32> = read_all(&t, p)
                .iter()
                .filter(|r| r.record.key.as_deref() == Some(w.to_string().as_bytes()))
                .map(|r| {
                    std::str::from_utf8(r.record.value.as_deref().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            assert!(vals.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

#[test]
fn topic_settings_change_live_and_durably() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    p.append(&[rec(None, Some("keyless"), 1)]).unwrap();
    let changed = log
        .alter_topic_config("t", |c| {
            c.set_kafka("cleanup.policy", "compact")?;
            c.set_kafka("flush.messages", "1")
        })
        .unwrap();
    assert!(changed.config().compact);
    // The partition a writer already held applies the new settings from its next append.
    assert!(matches!(
        p.append(&[rec(None, Some("keyless"), 2)]),
        Err(LogError::InvalidRecord { .. })
    ));
    assert_eq!(p.fsync_policy(), FsyncPolicy::Always);
    // The partition count is not a setting to alter.
    assert!(log
        .alter_topic_config("t", |c| {
            c.partitions = 3;
            Ok(())
        })
        .is_err());
    drop((t, p, changed));
    drop(log);
    let log = open(dir.path());
    let t = log.topic("t").unwrap();
    assert!(t.config().compact);
    assert_eq!(t.config().fsync, Some(FsyncPolicy::Always));
    assert_eq!(t.partition_count(), 1);
    log.alter_topic_config("t", |c| c.reset_kafka("cleanup.policy"))
        .unwrap();
    assert!(!log.topic("t").unwrap().config().compact);
}

#[test]
fn whole_batches_are_served_only_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // No flusher: acknowledgement waits for an explicit group commit.
    let log = open(dir.path());
    let t = log
        .create_topic(
            "acked",
            TopicConfig {
                fsync: Some(FsyncPolicy::IntervalMs(60_000)),
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let p = t.partition(0).unwrap();
    let recs: Vec<Record> = (0..3).map(|i| rec(None, Some(&i.to_string()), i)).collect();
    p.append_unacknowledged(&recs).unwrap();
    // Readable (queries see it), but not yet served as a Kafka broker serves: a crash could
    // still take it back.
    assert_eq!(p.end_offset(), 3);
    assert_eq!(p.acknowledged_end(), 0);
    let read = p.read_batches(0, 1 << 20).unwrap();
    assert!(read.batches.is_empty());
    assert_eq!(read.next, 0);
    p.flush().unwrap();
    assert_eq!(p.acknowledged_end(), 3);
    let read = p.read_batches(1, 1 << 20).unwrap();
    assert_eq!(read.batches.len(), 1);
    assert_eq!(read.batches[0].base_offset, 0);
    assert_eq!(read.next, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tokio_producers_and_a_waiting_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), eddy_log::LogOptions::default()).unwrap();
    let t = log
        .create_topic("async", TopicConfig::with_partitions(4))
        .unwrap();
    let reader = {
        let p = t.partition(3).unwrap().clone();
        tokio::spawn(async move {
            p.wait_for_data(0).await;
            p.read(0, ReadLimits::default()).unwrap()
        })
    };
    let mut tasks = Vec::new();
    for task in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let key = format!("{task}-{i}");
                let p = t.partition_for(Some(key.as_bytes()));
                t.partition(p)
                    .unwrap()
                    .append_async(&[rec(Some(&key), Some("v"), 0)])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total: u64 = t.partitions().iter().map(|p| p.end_offset()).sum();
    assert_eq!(total, 200);
    assert!(!reader.await.unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches, random timestamps, tiny segments and index intervals: a read at any
    /// offset starts exactly there, and a time lookup finds the first offset at or after the
    /// timestamp, as a brute-force scan does.
    #[test]
    fn index_lookups_by_offset_and_time(
        batches in proptest::collection::vec(proptest::collection::vec((0i64..1000, 0usize..60), 1..6), 1..30),
        probes in proptest::collection::vec(0i64..1100, 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let t = log.create_topic("p", TopicConfig { segment_bytes: 1024, index_interval_bytes: 64, ..TopicConfig::default() }).unwrap();
        let p = t.partition(0).unwrap().clone();
        let mut expected: Vec<Record> = Vec::new();
        for b in &batches {
            let records: Vec<Record> = b.iter().map(|(ts, len)| rec(None, Some(&"v".repeat(*len)), *ts)).collect();
            p.append(&records).unwrap();
            expected.extend(records);
        }
        for (i, e) in expected.iter().enumerate() {
            let got = p.read(i as u64, ReadLimits { max_records: 1, max_bytes: 1 }).unwrap();
            prop_assert_eq!(got[0].offset, i as u64);
            prop_assert_eq!(&got[0].record, e);
        }
        for &ts in &probes {
            let want = expected.iter().position(|r| r.timestamp >= ts).map(|i| i as u64);
            prop_assert_eq!(p.offset_for_timestamp(ts).unwrap(), want, "ts {}", ts);
        }
        drop((p, t, log));
        // And again from the index files written when the segments were sealed.
        let log = open(dir.path());
        let p = log.partition("p", 0).unwrap();
        for &ts in &probes {
            let want = expected.iter().position(|r| r.timestamp >= ts).map(|i| i as u64);
            prop_assert_eq!(p.offset_for_timestamp(ts).unwrap(), want, "after reopen, ts {}", ts);
        }
        for i in (0..expected.len()).step_by(7) {
            prop_assert_eq!(p.read(i as u64, ReadLimits::default()).unwrap()[0].offset, i as u64);
        }
    }
}

#[test]
fn truncation_drops_the_tail_across_segments_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = log.create_topic("t", small_segments(1)).unwrap();
    let p = t.partition(0).unwrap().clone();
    // Batches of three records: offsets 0-2, 3-5, ...
    for b in 0..60 {
        let records: Vec<Record> = (0..3)
            .map(|i| {
                rec(
                    Some("k"),
                    Some(&format!("value-{b}-{i}-{}", "x".repeat(100))),
                    b,
                )
            })
            .collect();
        p.append(&records).unwrap();
    }
    assert!(p.segment_count() > 3);
    assert!(
        matches!(p.truncate_to(31), Err(LogError::InvalidConfig(_))),
        "inside a batch"
    );
    assert_eq!(p.truncate_to(30).unwrap(), 150);
    assert_eq!(p.end_offset(), 30);
    assert_eq!(read_all(&t, 0).len(), 30);
    assert_eq!(
        p.append(&[rec(None, Some("after"), 99)])
            .unwrap()
            .base_offset,
        30
    );
    drop((p, t, log));

    let log = open(dir.path());
    let t = log.topic("t").unwrap();
    let all = read_all(&t, 0);
    assert_eq!(all.len(), 31);
    assert_eq!(
        all.last().unwrap().record.value.as_deref(),
        Some(&b"after"[..])
    );
    let last_kept = String::from_utf8(all[29].record.value.clone().unwrap().to_vec()).unwrap();
    assert!(last_kept.starts_with("value-9-2-"));
}
