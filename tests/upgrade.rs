//! A data directory written by the Eddy before tasks (`tests/fixtures/data-dir-before-tasks`,
//! made by commit 34d0ede: a two-partition `clicks` stream of 200 records, a windowed
//! aggregation by key and an aggregation through a repartition topic, both caught up) opens in
//! this one: its queries keep the state they have and run as the single task over every
//! partition they were, with the same results; queries created now run as a task per
//! partition. (ARCHITECTURE.md, "Exactly-once", last paragraph.)

use bytes::Bytes;
use eddy::log::{Log, LogOptions, Record};
use eddy::sql::{cell_text, parse_statements, Outcome, Session};

fn unpack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data-dir-before-tasks.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tar could not unpack {}",
        fixture.display()
    );
    dir
}

fn rows(session: &mut Session, sql: &str) -> Vec<Vec<String>> {
    let (stmt, text) = parse_statements(sql).unwrap().remove(0);
    let Outcome::Rows { rows, .. } = session.execute(&stmt, &text).unwrap() else {
        panic!("{sql} returns rows")
    };
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(cell_text).collect())
        .collect();
    out.sort();
    out
}

fn tasks(session: &Session, query: &str) -> Vec<String> {
    let info = session.query_infos();
    let q = info.iter().find(|q| q.id == query).unwrap();
    q.tasks.iter().map(|t| t.id.clone()).collect()
}

/// Clicks `from..to`, each where the old `eddy produce --key-separator` put it: key `u{i % 7}`,
/// value `V` = i, event time one second apart.
fn produce(log: &Log, from: u64, to: u64) {
    let topic = log.topic("clicks").unwrap();
    for i in from..to {
        let key = format!("u{}", i % 7);
        let record = Record {
            key: Some(Bytes::from(key.clone())),
            value: Some(Bytes::from(format!(
                "{{\"V\":{i},\"TS\":{}}}",
                1_700_000_000_000 + i * 1000
            ))),
            timestamp: 0,
            headers: Vec::new(),
        };
        let p = topic.partition_for(Some(key.as_bytes()));
        topic.partition(p).unwrap().append(&[record]).unwrap();
    }
}

/// By bucket `v % 3`, the count of `0..n`.
fn buckets(n: u64) -> Vec<Vec<String>> {
    (0..3)
        .map(|b| {
            vec![
                b.to_string(),
                (0..n).filter(|v| v % 3 == b).count().to_string(),
            ]
        })
        .collect()
}

#[test]
fn queries_from_before_tasks_keep_their_state_and_run_as_one_task() {
    let dir = unpack();
    // What a crash of that version between appending output and committing it left: records
    // past the sink's committed end, in no transaction. That version cut them on open; so
    // does this one.
    let ends: Vec<u64> = {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let sink = log.topic("PER_KEY").unwrap();
        let ends = sink.partitions().iter().map(|p| p.end_offset()).collect();
        let stray = Record::new(Some("u0"), Some("{\"N\":999}"), 0);
        sink.partition(0).unwrap().append(&[stray]).unwrap();
        ends
    };
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    let sink = log.topic("PER_KEY").unwrap();
    let now: Vec<u64> = sink.partitions().iter().map(|p| p.end_offset()).collect();
    assert_eq!(now, ends, "the uncommitted output is cut off");
    assert_eq!(tasks(&session, "CTAS_PER_KEY_0"), ["0_*"]);
    assert_eq!(tasks(&session, "CTAS_BY_BUCKET_1"), ["0_*", "1_*"]);
    // The state they had: nothing is read twice, nothing lost.
    session.run_until_idle().unwrap();
    assert_eq!(rows(&mut session, "SELECT * FROM by_bucket;"), buckets(200));
    let per_key = rows(&mut session, "SELECT * FROM per_key WHERE k = 'u0';");
    let counted: u64 = per_key.iter().map(|r| r[3].parse::<u64>().unwrap()).sum();
    assert_eq!(counted, (0..200).filter(|i| i % 7 == 0).count() as u64);

    // They go on from there.
    produce(&log, 200, 300);
    session.run_until_idle().unwrap();
    assert_eq!(rows(&mut session, "SELECT * FROM by_bucket;"), buckets(300));

    // A query created now runs as a task per partition, beside them.
    let (stmt, text) =
        parse_statements("CREATE TABLE fresh AS SELECT k, COUNT(*) AS n FROM clicks GROUP BY k;")
            .unwrap()
            .remove(0);
    session
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    session.execute(&stmt, &text).unwrap();
    session.run_until_idle().unwrap();
    let fresh_tasks = tasks(&session, "CTAS_FRESH_2");
    assert_eq!(fresh_tasks, ["0_0", "0_1"]);
    let fresh = rows(&mut session, "SELECT * FROM fresh;");
    let total: u64 = fresh.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 300);

    // And each keeps its layout across a restart.
    drop(session);
    drop(log);
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    assert_eq!(tasks(&session, "CTAS_BY_BUCKET_1"), ["0_*", "1_*"]);
    assert_eq!(tasks(&session, "CTAS_FRESH_2"), ["0_0", "0_1"]);
    produce(&log, 300, 310);
    session.run_until_idle().unwrap();
    assert_eq!(rows(&mut session, "SELECT * FROM by_bucket;"), buckets(310));
    let fresh = rows(&mut session, "SELECT * FROM fresh;");
    let total: u64 = fresh.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 310);
}
