mod common;

use std::time::Duration;

use common::{open, rec};
use eddy_log::{AssignmentStrategy, Consumer, OffsetReset, TopicConfig, TopicPartition};

fn fill(log: &eddy_log::Log, topic: &str, partitions: u32, per_partition: usize) {
    let t = log
        .create_topic(topic, TopicConfig::with_partitions(partitions))
        .unwrap();
    for p in 0..partitions {
        let records: Vec<_> = (0..per_partition)
            .map(|i| rec(None, Some(&format!("{p}:{i}")), 0))
            .collect();
        t.partition(p).unwrap().append(&records).unwrap();
    }
}

fn drain(c: &mut Consumer) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let batch = c.poll(Duration::from_millis(20)).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .into_iter()
                .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap()),
        );
    }
}

#[test]
fn committed_offsets_survive_a_restart_and_a_group_resumes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        fill(&log, "t", 2, 5);
        let mut c = Consumer::with_group(
            &log,
            "g",
            &["t"],
            OffsetReset::Earliest,
            AssignmentStrategy::Range,
        )
        .unwrap();
        assert_eq!(drain(&mut c).len(), 10);
        c.commit().unwrap();
        assert_eq!(
            log.committed_offset("g", &TopicPartition::new("t", 1)),
            Some(5)
        );
    }
    let log = open(dir.path());
    assert_eq!(
        log.committed_offset("g", &TopicPartition::new("t", 0)),
        Some(5)
    );
    let mut again = Consumer::with_group(
        &log,
        "g",
        &["t"],
        OffsetReset::Earliest,
        AssignmentStrategy::Range,
    )
    .unwrap();
    assert!(
        drain(&mut again).is_empty(),
        "resumes after what was committed"
    );
    log.partition("t", 0)
        .unwrap()
        .append(&[rec(None, Some("new"), 0)])
        .unwrap();
    assert_eq!(drain(&mut again), vec!["new".to_string()]);
    let mut other = Consumer::with_group(
        &log,
        "other",
        &["t"],
        OffsetReset::Earliest,
        AssignmentStrategy::Range,
    )
    .unwrap();
    assert_eq!(
        drain(&mut other).len(),
        11,
        "another group starts from its own reset position"
    );
    log.delete_topic("t").unwrap();
    assert_eq!(
        log.committed_offset("g", &TopicPartition::new("t", 0)),
        None,
        "deleting a topic forgets its commits"
    );
}

#[test]
fn two_members_split_a_topic_and_one_takes_over_when_the_other_leaves() {
    for strategy in [AssignmentStrategy::Range, AssignmentStrategy::Sticky] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        fill(&log, "t", 4, 3);
        let mut a =
            Consumer::with_group(&log, "g", &["t"], OffsetReset::Earliest, strategy).unwrap();
        let mut b =
            Consumer::with_group(&log, "g", &["t"], OffsetReset::Earliest, strategy).unwrap();
        let got_a = drain(&mut a);
        let got_b = drain(&mut b);
        assert_eq!(a.assignment().len(), 2, "{strategy:?}");
        assert_eq!(b.assignment().len(), 2);
        assert_eq!(
            got_a.len() + got_b.len(),
            12,
            "each record read once: {got_a:?} {got_b:?}"
        );
        assert!(got_a.iter().all(|v| !got_b.contains(v)));
        b.commit().unwrap();
        drop(b);
        // a takes over b's partitions, from where b committed: nothing is read twice.
        let more = drain(&mut a);
        assert_eq!(a.assignment().len(), 4);
        assert!(more.is_empty(), "{more:?}");
        for p in 0..4 {
            log.partition("t", p)
                .unwrap()
                .append(&[rec(None, Some(&format!("late{p}")), 0)])
                .unwrap();
        }
        assert_eq!(drain(&mut a).len(), 4);
    }
}

#[test]
fn a_consumer_without_a_group_reads_everything_and_waits_for_more() {
    let dir = tempfile::tempdir().unwrap();
    let log = eddy_log::Log::open(dir.path(), eddy_log::LogOptions::default()).unwrap();
    fill(&log, "t", 3, 2);
    let mut c = Consumer::new(&log, &["t"], OffsetReset::Earliest).unwrap();
    assert_eq!(drain(&mut c).len(), 6);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.partition("t", 2)
                .unwrap()
                .append(&[rec(None, Some("woke"), 0)])
                .unwrap();
        })
    };
    let got = c.poll(Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert_eq!(got[0].partition, 2);
    assert_eq!(got[0].record.value.as_deref(), Some(&b"woke"[..]));
}
