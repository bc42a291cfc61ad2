//! Kills a process running a windowed aggregation with SIGKILL, again and again, and checks
//! that the output topic and the table are exact: one update per input record (none missing,
//! none written twice), each window's updates counting 1, 2, ... n with no gap and no repeat,
//! each window's last update and the table holding the count and sum computed from the input.
//!
//! The input has 4 partitions and the query runs as a task per partition on 2 stream threads.
//! The aggregating process is this same test binary, re-executed with `EDDY_CRASH_CHILD` set.
//! It opens the data directory as `eddy` does (catalog from the command topic, state from
//! RocksDB, positions from the state's commits, undecided transactions settled) and runs the
//! query until its input is consumed. It commits every 100 ms, so that kills land between many
//! commits, and often while a transaction is open.
//!
//! Two queries: grouped by the stream's key, and grouped by a value column, which goes
//! through a repartition topic (two sub-topologies, each a task per partition).

use std::process::{Command, Stdio};
use std::time::Duration;

use std::collections::BTreeMap;

use bytes::Bytes;
use eddy::log::{FsyncPolicy, Log, LogOptions, ReadLimits, Record, StoredRecord, TopicConfig};
use eddy::sql::{parse_statements, Outcome, Session};

const CHILD_ENV: &str = "EDDY_CRASH_CHILD";
const RECORDS: u64 = 200_000;
const KEYS: u64 = 500;

/// A query under test: its statements, and the topics its sub-topologies write.
struct Case {
    setup: &'static str,
    stages: &'static [&'static str],
}

const BY_KEY: Case = Case {
    setup: "
    CREATE STREAM CLICKS (K STRING KEY, V BIGINT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
    CREATE TABLE PER_MINUTE AS SELECT K, COUNT(*) AS N, SUM(V) AS TOTAL
        FROM CLICKS WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY K EMIT CHANGES;",
    stages: &["PER_MINUTE"],
};

const BY_VALUE: Case = Case {
    setup: "
    CREATE STREAM CLICKS (K STRING KEY, U STRING, V BIGINT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
    CREATE TABLE PER_MINUTE AS SELECT U, COUNT(*) AS N, SUM(V) AS TOTAL
        FROM CLICKS WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY U EMIT CHANGES;",
    stages: &[
        "_eddy-CTAS_PER_MINUTE_0-Aggregate-GroupBy-repartition",
        "PER_MINUTE",
    ],
};

fn options() -> LogOptions {
    LogOptions {
        // SIGKILL leaves the page cache intact: fsync adds nothing to this test but time.
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

const PARTITIONS: u32 = 4;
const THREADS: &str = "2";

fn produce(dir: &std::path::Path) {
    let log = Log::open(dir, options()).unwrap();
    let topic = log
        .create_topic("clicks", TopicConfig::with_partitions(PARTITIONS))
        .unwrap();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(1000) {
        let mut by_partition = vec![Vec::new(); PARTITIONS as usize];
        for &i in chunk {
            let key = format!("user{}", (i * 7919) % KEYS);
            let p = topic.partition_for(Some(key.as_bytes()));
            by_partition[p as usize].push(Record {
                key: Some(Bytes::from(key)),
                value: Some(Bytes::from(format!(
                    "{{\"V\": {}, \"U\": \"user{}\"}}",
                    i % 100,
                    (i * 7919) % KEYS
                ))),
                timestamp: (i * 13) as i64,
                headers: Vec::new(),
            });
        }
        for (p, records) in by_partition.iter().enumerate() {
            topic.partition(p as u32).unwrap().append(records).unwrap();
        }
    }
}

/// Opens the directory as a restarted `eddy` would, creates the query on first start, and runs
/// it until everything is consumed.
fn run_to_end(dir: &std::path::Path, case: &Case) {
    let log = Log::open(dir, options()).unwrap();
    let mut session = Session::open(log).unwrap();
    if session.catalog.source("PER_MINUTE").is_none() {
        session
            .properties
            .insert("auto.offset.reset".into(), "earliest".into());
        session
            .properties
            .insert("commit.interval.ms".into(), "100".into());
        for (stmt, text) in parse_statements(case.setup).unwrap() {
            session.execute(&stmt, &text).unwrap();
        }
    }
    session
        .properties
        .insert(eddy::sql::STREAM_THREADS.into(), THREADS.into());
    session.run_until_caught_up().unwrap();
}

/// Whether each stage of `case` has a transaction left open by the kill: output appended by
/// work that had not committed (or committed only its state), which recovery must settle.
fn torn_stages(dir: &std::path::Path, case: &Case) -> Vec<bool> {
    let log = Log::open(dir, options()).unwrap();
    case.stages
        .iter()
        .map(|topic| {
            log.topic(topic)
                .is_ok_and(|t| t.partitions().iter().any(|p| !p.undecided().is_empty()))
        })
        .collect()
}

/// The table's rows by pull query, as (key, window start, count, sum), sorted.
fn pull(dir: &std::path::Path) -> Vec<(String, i64, i64, i64)> {
    let log = Log::open(dir, options()).unwrap();
    let mut session = Session::open(log).unwrap();
    let (stmt, text) = parse_statements("SELECT * FROM PER_MINUTE;")
        .unwrap()
        .remove(0);
    let Outcome::Rows { schema, rows, .. } = session.execute(&stmt, &text).unwrap() else {
        panic!("a pull query returns rows")
    };
    let columns: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns[1..], ["WINDOWSTART", "WINDOWEND", "N", "TOTAL"]);
    let text = eddy::sql::cell_text;
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                text(&r[0]),
                text(&r[1]).parse().unwrap(),
                text(&r[3]).parse().unwrap(),
                text(&r[4]).parse().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What the table must hold, computed from the input directly.
fn expected_rows() -> Vec<(String, i64, i64, i64)> {
    let mut groups = std::collections::BTreeMap::new();
    for i in 0..RECORDS {
        let key = format!("user{}", (i * 7919) % KEYS);
        let window = (i * 13) as i64 / 60_000 * 60_000;
        let g = groups.entry((key, window)).or_insert((0i64, 0i64));
        g.0 += 1;
        g.1 += (i % 100) as i64;
    }
    groups
        .into_iter()
        .map(|((k, w), (n, sum))| (k, w, n, sum))
        .collect()
}

/// The output topic's readable records, partition by partition.
fn output(dir: &std::path::Path) -> Vec<StoredRecord> {
    let log = Log::open(dir, options()).unwrap();
    // A child killed before it created the table leaves no topic yet.
    let Ok(topic) = log.topic("PER_MINUTE") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in topic.partitions() {
        let mut offset = p.start_offset();
        loop {
            let batch = p.read(offset, ReadLimits::default()).unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            out.extend(batch);
        }
    }
    out
}

/// The updates of each window of the output, by (key bytes, window bytes): their counts and
/// sums in the order written.
fn updates(records: &[StoredRecord]) -> BTreeMap<Vec<u8>, Vec<(i64, i64)>> {
    let mut windows: BTreeMap<Vec<u8>, Vec<(i64, i64)>> = BTreeMap::new();
    for r in records {
        let v: serde_json::Value =
            serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
        let (n, total) = (v["N"].as_i64().unwrap(), v["TOTAL"].as_i64().unwrap());
        windows
            .entry(r.record.key.as_deref().unwrap().to_vec())
            .or_default()
            .push((n, total));
    }
    windows
}

#[test]
fn windowed_aggregation_is_exactly_once_under_sigkill() {
    exactly_once_under_sigkill(
        "windowed_aggregation_is_exactly_once_under_sigkill",
        &BY_KEY,
    );
}

#[test]
fn repartitioned_aggregation_is_exactly_once_under_sigkill() {
    exactly_once_under_sigkill(
        "repartitioned_aggregation_is_exactly_once_under_sigkill",
        &BY_VALUE,
    );
}

/// Runs `case` in a child process (this binary running test `name`) killed again and again.
fn exactly_once_under_sigkill(name: &str, case: &Case) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_to_end(std::path::Path::new(&dir), case);
        return;
    }
    let reference = tempfile::tempdir().unwrap();
    produce(reference.path());
    run_to_end(reference.path(), case);
    let expected = output(reference.path());
    assert_eq!(expected.len() as u64, RECORDS, "one update per record");

    let mut crashed = tempfile::tempdir().unwrap();
    produce(crashed.path());
    // Kill the aggregation at varied moments until several kills have landed between each
    // stage's output append and its commit: those are the crashes exactly-once recovery
    // exists for.
    let mut torn = vec![0; case.stages.len()];
    let enough = |torn: &[usize]| torn.iter().all(|&n| n >= 2);
    let mut round = 0u64;
    while !enough(&torn) {
        assert!(
            round < 400,
            "no kill landed between an append and its commit: {torn:?}"
        );
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(CHILD_ENV, crashed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + (round * 37) % 500));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        let written = output(crashed.path()).len() as u64;
        if killed {
            for (n, cut) in torn.iter_mut().zip(torn_stages(crashed.path(), case)) {
                *n += usize::from(cut);
            }
        }
        if !killed || written == RECORDS {
            // It finished: start over on a fresh copy of the input, to crash it again.
            if !enough(&torn) {
                // A new directory: emptying the old one in place raced with a log still
                // closing in this process, and left state behind for the next round.
                crashed = tempfile::tempdir().unwrap();
                produce(crashed.path());
            }
        }
        round += 1;
    }
    run_to_end(crashed.path(), case);
    let actual = output(crashed.path());
    assert_eq!(
        actual.len(),
        expected.len(),
        "one update per input record, as without crashes"
    );
    // Tasks interleave, so the output's order may differ from the reference run's; each
    // window's updates may not (a window's records are all one task's), but a repartitioned
    // window's records come from several tasks, in an order that varies. What may not vary:
    // each window counts 1, 2, ... n once each, and ends with the reference's count and sum.
    let (actual, expected) = (updates(&actual), updates(&expected));
    assert_eq!(actual.len(), expected.len(), "the same windows");
    for (window, e) in &expected {
        let a = &actual[window];
        let counts: Vec<i64> = a.iter().map(|(n, _)| *n).collect();
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=e.len() as i64).collect::<Vec<_>>(),
            "every update of window {window:?} once: {counts:?}"
        );
        assert_eq!(
            a.last(),
            e.last(),
            "window {window:?} ends as without crashes"
        );
    }
    let table = pull(crashed.path());
    assert_eq!(table, pull(reference.path()));
    assert_eq!(
        table,
        expected_rows(),
        "every count and sum as computed from the input"
    );
}
