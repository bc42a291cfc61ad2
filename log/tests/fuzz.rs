//! Fuzz targets of the log (see `eddy-fuzz`): whatever bytes a batch or a segment file holds,
//! reading them gives records or an error, never a panic, and never a wrong record.

mod common;

use bytes::Bytes;
use common::rec;
use eddy_log::batch::{self, BatchFormat};
use eddy_log::{Header, Log, LogOptions, ReadLimits, Record, TopicConfig};

/// `records` as one batch with offsets from `first` (a transaction's if `writer` is given), and
/// the offset after it.
fn encoded(records: &[Record], writer: Option<u64>, first: u64) -> (Vec<u8>, u64) {
    let mut buf = Vec::new();
    let offsets = records
        .iter()
        .enumerate()
        .map(|(i, r)| (first + i as u64, r));
    let meta = batch::encode(&mut buf, writer, BatchFormat::default(), 0, offsets).unwrap();
    (buf, meta.next_offset())
}

/// Batches as the appender writes them: plain and transactional, with and without keys,
/// values and headers.
fn batches() -> Vec<Vec<u8>> {
    let mut with_headers = rec(Some("k"), Some("v"), 3);
    with_headers.headers = vec![Header {
        name: "h".into(),
        value: Some(Bytes::from_static(b"x")),
    }];
    let sets: Vec<Vec<Record>> = vec![
        vec![rec(Some("key"), Some("{\"A\":1}"), 1_700_000_000_000)],
        vec![rec(None, None, 0), rec(Some(""), Some(""), -1)],
        vec![with_headers.clone(), with_headers],
        (0..20)
            .map(|i| rec(Some(&format!("k{i}")), Some(&"v".repeat(i)), i as i64))
            .collect(),
    ];
    let mut out = Vec::new();
    for (n, records) in sets.iter().enumerate() {
        for writer in [None, Some(42)] {
            out.push(encoded(records, writer, n as u64 * 100).0);
        }
    }
    // Two batches back to back, as a segment holds them.
    out.push([out[0].clone(), out[6].clone()].concat());
    out
}

#[test]
fn fuzz_batch_decoding() {
    eddy_fuzz::run("log_batch", batches(), |input| {
        let bytes = Bytes::copy_from_slice(input);
        if let Ok(meta) = batch::parse(&bytes) {
            let whole = bytes.slice(..meta.total_len());
            if let Ok(records) = batch::decode(&whole, &meta) {
                assert!(records.len() <= meta.count as usize);
                for r in &records {
                    assert!(r.offset >= meta.base_offset && r.offset <= meta.last_offset());
                }
            }
        }
    });
}

/// A partition whose only segment holds the input: opening, reading, verifying and repairing
/// it must never panic, and every record read lies in the partition's range.
#[test]
fn fuzz_segment_reading() {
    let dir = tempfile::tempdir().unwrap();
    let options = || LogOptions {
        background: false,
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), options()).unwrap();
    log.create_topic("t", TopicConfig::default()).unwrap();
    // A recovery point of 1000, taken from a partition that reached it: with it, bad batches
    // are damage to keep; without it, a torn tail to cut off. Inputs of odd length get it.
    let reference = log.create_topic("ref", TopicConfig::default()).unwrap();
    let thousand: Vec<Record> = (0..1000).map(|_| rec(None, Some("x"), 0)).collect();
    reference.partition(0).unwrap().append(&thousand).unwrap();
    drop((reference, log));
    let point = std::fs::read(dir.path().join("topics/ref/0/recovery-point")).unwrap();
    let part = dir.path().join("topics/t/0");
    // A segment as the appender writes one: offsets growing from batch to batch.
    let mut segment = Vec::new();
    let mut next = 0u64;
    for n in 0..10u64 {
        let records: Vec<Record> = (0..n + 1)
            .map(|i| rec(Some(&format!("k{i}")), Some("value"), i as i64))
            .collect();
        let (buf, after) = encoded(&records, (n % 3 == 0).then_some(7), next);
        next = after;
        segment.extend(buf);
    }
    let segments = vec![segment];
    eddy_fuzz::run("log_segment", segments, |input| {
        for entry in std::fs::read_dir(&part).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        std::fs::write(part.join("00000000000000000000.log"), input).unwrap();
        if input.len() % 2 == 1 {
            std::fs::write(part.join("recovery-point"), &point).unwrap();
        }
        let Ok(log) = Log::open(dir.path(), options()) else {
            return;
        };
        let p = log.partition("t", 0).unwrap();
        let mut offset = p.start_offset();
        while let Ok(read) = p.read_on(offset, ReadLimits::default()) {
            if read.next <= offset {
                break;
            }
            for r in &read.records {
                assert!(r.offset >= offset && r.offset < p.end_offset());
            }
            offset = read.next;
        }
        let _ = p.verify();
        if p.repair().is_ok() {
            assert!(
                p.verify().is_ok_and(|d| d.is_empty()),
                "repaired, yet damaged"
            );
        }
        let _ = p.append(&[rec(Some("k"), Some("after"), 0)]);
    });
}
