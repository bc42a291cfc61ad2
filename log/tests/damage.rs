//! Damage to acknowledged data: kept, reported with its offsets, and skipped only on purpose.

mod common;

use common::{open, read_all, rec};
use eddy_log::{LogError, Partition, ReadLimits, TopicConfig};

const RECORDS: u64 = 100_000;
const PER_APPEND: u64 = 100;

/// A one-partition topic of `RECORDS` JSON records, appended `PER_APPEND` at a time, closed
/// cleanly. Returns the byte position where each append's batch starts.
fn filled(dir: &std::path::Path) -> Vec<u64> {
    let log = open(dir);
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap();
    let mut starts = Vec::new();
    for a in 0..RECORDS / PER_APPEND {
        starts.push(p.size_bytes());
        let records: Vec<_> = (0..PER_APPEND)
            .map(|i| {
                let n = a * PER_APPEND + i;
                let v = format!(r#"{{"id":{n},"name":"user-{n}","amount":{}}}"#, n % 97);
                rec(Some(&format!("k{}", n % 1000)), Some(&v), n as i64)
            })
            .collect();
        p.append(&records).unwrap();
    }
    starts
}

fn segment(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("topics/t/0/00000000000000000000.log")
}

fn overwrite(dir: &std::path::Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(dir))
        .unwrap();
    f.write_all_at(bytes, at).unwrap();
}

/// Reads from `from` until the end or an error.
fn read_until_error(p: &Partition, from: u64) -> (u64, Option<LogError>) {
    let mut offset = from;
    let mut count = 0;
    loop {
        match p.read(offset, ReadLimits::default()) {
            Ok(records) if records.is_empty() => return (count, None),
            Ok(records) => {
                count += records.len() as u64;
                offset = records.last().unwrap().offset + 1;
            }
            Err(e) => return (count, Some(e)),
        }
    }
}

#[test]
fn acknowledged_records_after_a_damaged_batch_stay_readable_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let starts = filled(dir.path());
    // 8 bytes in the body of the batch 30% of the way in, as a bad sector would.
    let hit = starts.len() * 3 / 10;
    overwrite(
        dir.path(),
        starts[hit] + 40,
        b"\xde\xad\xbe\xef\xde\xad\xbe\xef",
    );
    let lost = hit as u64 * PER_APPEND..(hit as u64 + 1) * PER_APPEND;

    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.recovered_truncation(), None, "nothing is cut off");
    assert_eq!(p.end_offset(), RECORDS);
    let damage = p.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].offsets, lost);
    assert_eq!(
        damage[0].bytes,
        starts[hit]..starts[hit + 1],
        "the damaged batch's bytes"
    );

    // A reader gets everything before the damage, then an error naming it.
    let (before, error) = read_until_error(&p, 0);
    assert_eq!(before, lost.start);
    match error {
        Some(LogError::Corrupt {
            topic,
            partition,
            offsets,
            ..
        }) => assert_eq!((topic.as_str(), partition, offsets), ("t", 0, lost.clone())),
        other => panic!("expected the damage, got {other:?}"),
    }
    let message = p.read(lost.start, ReadLimits::default()).unwrap_err();
    assert!(
        message.to_string().starts_with(&format!(
            "records {}..{} of t/0 are damaged",
            lost.start, lost.end
        )),
        "{message}"
    );
    // Every record after it is still there.
    let (after, error) = read_until_error(&p, lost.end);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(after, RECORDS - lost.end);
    assert_eq!(p.verify().unwrap(), damage, "verify finds the same range");
    // Appends go on after the last acknowledged offset.
    assert_eq!(
        p.append(&[rec(Some("k"), Some("new"), 1)])
            .unwrap()
            .base_offset,
        RECORDS
    );
    drop((p, log));

    // Still so after a restart; then a repair skips the damaged range on purpose.
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.damage().len(), 1);
    let skipped = p.repair().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].offsets, lost);
    let t = log.topic("t").unwrap();
    let all = read_all(&t, 0);
    assert_eq!(all.len() as u64, RECORDS + 1 - PER_APPEND);
    assert!(all.iter().all(|r| !lost.contains(&r.offset)));
    assert!(p.verify().unwrap().is_empty());
    let repairs = std::fs::read_to_string(dir.path().join("topics/t/0/repairs.log")).unwrap();
    assert!(
        repairs.contains(&format!(
            r#""offsets":{{"start":{},"end":{}}}"#,
            lost.start, lost.end
        )),
        "{repairs}"
    );
    drop((p, t, log));
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert!(p.damage().is_empty());
    assert_eq!(p.end_offset(), RECORDS + 1);
}

#[test]
fn damage_to_a_batch_header_is_passed_by_the_next_batch_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let starts = filled(dir.path());
    // The header's offset and length: the batch's own length can no longer be trusted.
    let hit = starts.len() / 2;
    overwrite(dir.path(), starts[hit], &[0xff; 12]);
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    let damage = p.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(
        damage[0].offsets,
        hit as u64 * PER_APPEND..(hit as u64 + 1) * PER_APPEND
    );
    let (after, error) = read_until_error(&p, damage[0].offsets.end);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(after, RECORDS - damage[0].offsets.end);
}

#[test]
fn damage_to_the_last_batch_keeps_its_offsets_taken() {
    let dir = tempfile::tempdir().unwrap();
    let starts = filled(dir.path());
    let len = std::fs::metadata(segment(dir.path())).unwrap().len();
    overwrite(dir.path(), len - 8, &[0; 8]);
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    let last = RECORDS - PER_APPEND..RECORDS;
    assert_eq!(p.damage()[0].offsets, last);
    assert_eq!(p.damage()[0].bytes, *starts.last().unwrap()..len);
    assert_eq!(
        p.end_offset(),
        RECORDS,
        "the lost offsets are not handed out again"
    );
    let next = p.append(&[rec(None, Some("after"), 0)]).unwrap();
    assert_eq!(next.base_offset, RECORDS);
    let read = p.read(RECORDS, ReadLimits::default()).unwrap();
    assert_eq!(read[0].record.value.as_deref(), Some(&b"after"[..]));
    p.repair().unwrap();
    drop((p, log));
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.end_offset(), RECORDS + 1);
    assert_eq!(
        p.append(&[rec(None, Some("again"), 0)])
            .unwrap()
            .base_offset,
        RECORDS + 1
    );
    let t = log.topic("t").unwrap();
    assert_eq!(read_all(&t, 0).len() as u64, RECORDS - PER_APPEND + 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever bytes are overwritten, every offset is either readable or inside a damaged range
    /// the log reports, and the partition keeps its end.
    #[test]
    fn every_offset_is_readable_or_reported(
        at in 0.0f64..1.0,
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path());
            let t = log.create_topic("t", TopicConfig::default()).unwrap();
            let p = t.partition(0).unwrap();
            for a in 0..100u64 {
                let records: Vec<_> = (0..10)
                    .map(|i| rec(Some("k"), Some(&format!("value {}", a * 10 + i)), 0))
                    .collect();
                p.append(&records).unwrap();
            }
        }
        let len = std::fs::metadata(segment(dir.path())).unwrap().len();
        let pos = ((len - 1) as f64 * at) as u64;
        let garbage = &garbage[..garbage.len().min((len - pos) as usize)];
        overwrite(dir.path(), pos, garbage);

        let log = open(dir.path());
        let p = log.partition("t", 0).unwrap();
        proptest::prop_assert_eq!(p.end_offset(), 1000);
        let damage = p.verify().unwrap();
        for offset in 0..1000u64 {
            let lost = damage.iter().any(|d| d.offsets.contains(&offset));
            match p.read(offset, ReadLimits { max_records: 1, max_bytes: 1 }) {
                Ok(r) => {
                    proptest::prop_assert!(!lost, "{} read although reported lost", offset);
                    proptest::prop_assert_eq!(r[0].offset, offset);
                    let value = format!("value {offset}");
                    proptest::prop_assert_eq!(r[0].record.value.as_deref(), Some(value.as_bytes()));
                }
                Err(LogError::Corrupt { offsets, .. }) => {
                    proptest::prop_assert!(lost, "{} unreadable but not reported", offset);
                    proptest::prop_assert!(offsets.contains(&offset));
                }
                Err(e) => proptest::prop_assert!(false, "{}", e),
            }
        }
    }
}
