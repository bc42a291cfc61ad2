//! Kills a process running a windowed aggregation with SIGKILL, again and again, and checks
//! that the output topic is exactly what a run without crashes writes: no update missing, none
//! written twice, every count and sum as if nothing had happened.
//!
//! The aggregating process is this same test binary, re-executed with `EDDY_CRASH_CHILD` set.
//! It opens the data directory as `eddy` does (catalog from the command topic, state from
//! RocksDB, positions from the state's commits) and runs the query until its input is consumed.
//! It commits every 100 ms, so that kills land between many commits, and often while output is
//! pending.
//!
//! Two queries: grouped by the stream's key, and grouped by a value column, which goes
//! through a repartition topic (two exactly-once stages in one process).

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use eddy::engine::state::{StateDb, StateOptions};
use eddy::log::{FsyncPolicy, Log, LogOptions, ReadLimits, Record, StoredRecord, TopicConfig};
use eddy::sql::{parse_statements, Outcome, Session};

const CHILD_ENV: &str = "EDDY_CRASH_CHILD";
const RECORDS: u64 = 200_000;
const KEYS: u64 = 500;

/// A query under test: its statements, and its stages as (the owner they commit as, the
/// topic they write).
struct Case {
    setup: &'static str,
    stages: &'static [(&'static str, &'static str)],
}

const BY_KEY: Case = Case {
    setup: "
    CREATE STREAM CLICKS (K STRING KEY, V BIGINT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
    CREATE TABLE PER_MINUTE AS SELECT K, COUNT(*) AS N, SUM(V) AS TOTAL
        FROM CLICKS WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY K EMIT CHANGES;",
    stages: &[("CTAS_PER_MINUTE_0", "PER_MINUTE")],
};

const BY_VALUE: Case = Case {
    setup: "
    CREATE STREAM CLICKS (K STRING KEY, U STRING, V BIGINT) WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON');
    CREATE TABLE PER_MINUTE AS SELECT U, COUNT(*) AS N, SUM(V) AS TOTAL
        FROM CLICKS WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY U EMIT CHANGES;",
    stages: &[
        (
            "CTAS_PER_MINUTE_0-Aggregate-GroupBy-repartition",
            "_eddy-CTAS_PER_MINUTE_0-Aggregate-GroupBy-repartition",
        ),
        ("CTAS_PER_MINUTE_0", "PER_MINUTE"),
    ],
};

fn options() -> LogOptions {
    LogOptions {
        // SIGKILL leaves the page cache intact: fsync adds nothing to this test but time.
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

fn produce(dir: &std::path::Path) {
    let log = Log::open(dir, options()).unwrap();
    let topic = log
        .create_topic("clicks", TopicConfig::with_partitions(1))
        .unwrap();
    let p = topic.partition(0).unwrap();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(1000) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|&i| Record {
                key: Some(Bytes::from(format!("user{}", (i * 7919) % KEYS))),
                value: Some(Bytes::from(format!(
                    "{{\"V\": {}, \"U\": \"user{}\"}}",
                    i % 100,
                    (i * 7919) % KEYS
                ))),
                timestamp: (i * 13) as i64,
                headers: Vec::new(),
            })
            .collect();
        p.append(&records).unwrap();
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
    session.run_until_idle().unwrap();
}

/// Whether each stage of `case` has output past its last commit: appended by work that
/// never committed, which recovery must cut off.
fn torn_stages(dir: &std::path::Path, case: &Case) -> Vec<bool> {
    let log = Log::open(dir, options()).unwrap();
    let db = StateDb::open(dir.join("state"), StateOptions::default()).unwrap();
    case.stages
        .iter()
        .map(|(owner, topic)| {
            let Ok(p) = log.partition(topic, 0) else {
                return false;
            };
            let committed = db.offset(owner, &format!("output/{topic}/0")).unwrap();
            p.end_offset() > committed.unwrap_or(0)
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
    let Outcome::Rows { schema, rows } = session.execute(&stmt, &text).unwrap() else {
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

fn output(dir: &std::path::Path) -> Vec<StoredRecord> {
    let log = Log::open(dir, options()).unwrap();
    // A child killed before it created the table leaves no topic yet.
    let Ok(p) = log.partition("PER_MINUTE", 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut offset = p.start_offset();
    loop {
        let batch = p.read(offset, ReadLimits::default()).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset + 1;
        out.extend(batch);
    }
    out
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
        "as many updates as without crashes"
    );
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a.offset, e.offset);
        assert_eq!(a.record.key, e.record.key, "offset {}", a.offset);
        assert_eq!(a.record.value, e.record.value, "offset {}", a.offset);
        assert_eq!(
            a.record.timestamp, e.record.timestamp,
            "offset {}",
            a.offset
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
