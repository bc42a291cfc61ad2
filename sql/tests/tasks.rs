//! Queries run as a task per partition on stream threads: the same input gives the same output
//! on one thread (driven, in order) as on four (on the session's stream threads, tasks in
//! parallel), record for record per key, in the same order per key; and the tasks of a query
//! are what EXPLAIN and `query_infos` say they are.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::run;
use eddy_log::{Log, LogOptions, ReadLimits, Record, TopicConfig};
use eddy_sql::{Session, STREAM_THREADS};
use proptest::prelude::*;

const PARTITIONS: u32 = 4;

/// Three queries whose output per key is a function of the input alone: a windowed aggregation
/// by key, a filter and projection, a stream-stream join of co-partitioned streams.
const QUERIES: &str = "
    CREATE STREAM clicks (k STRING KEY, v BIGINT) WITH (kafka_topic='clicks', value_format='JSON');
    CREATE STREAM views (k STRING KEY, w BIGINT) WITH (kafka_topic='views', value_format='JSON');
    CREATE TABLE counts AS SELECT k, COUNT(*) AS n, SUM(v) AS s FROM clicks
        WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k EMIT CHANGES;
    CREATE STREAM big AS SELECT k, v * 2 AS d FROM clicks WHERE v > 20;
    CREATE STREAM both AS SELECT c.k AS k, v, w FROM clicks c JOIN views r
        WITHIN 5 SECONDS ON c.k = r.k;";

const OUTPUTS: [&str; 3] = ["COUNTS", "BIG", "BOTH"];

/// Appends `records` (key, value, time) to `topic`, each to the partition its key chooses.
fn produce(log: &Log, topic: &str, field: &str, records: &[(u8, u8, i64)]) {
    let t = log.topic(topic).unwrap();
    for &(k, v, time) in records {
        let key = format!("k{k}");
        let p = t.partition_for(Some(key.as_bytes()));
        let record = Record {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(format!("{{\"{field}\":{v}}}"))),
            timestamp: time,
            headers: Vec::new(),
        };
        t.partition(p).unwrap().append(&[record]).unwrap();
    }
}

/// A session over a new log holding `clicks` and `views`, with the queries created.
fn setup(
    dir: &std::path::Path,
    clicks: &[(u8, u8, i64)],
    views: &[(u8, u8, i64)],
) -> (Log, Session) {
    let log = Log::open(dir, LogOptions::default()).unwrap();
    for name in ["clicks", "views"] {
        log.create_topic(name, TopicConfig::with_partitions(PARTITIONS))
            .unwrap();
    }
    produce(&log, "clicks", "V", clicks);
    produce(&log, "views", "W", views);
    let mut session = Session::new(log.clone());
    session
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    run(&mut session, QUERIES);
    (log, session)
}

/// Each output topic's records, by key: the values in the order written.
fn outputs(log: &Log) -> BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>> {
    let mut out: BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>> = BTreeMap::new();
    for topic in OUTPUTS {
        for p in log.topic(topic).unwrap().partitions() {
            let mut at = p.start_offset();
            loop {
                let batch = p.read(at, ReadLimits::default()).unwrap();
                let Some(last) = batch.last() else { break };
                at = last.offset + 1;
                for r in batch {
                    let key = r.record.key.as_deref().unwrap_or_default().to_vec();
                    let value = r.record.value.as_deref().unwrap_or_default().to_vec();
                    out.entry((topic.to_string(), key)).or_default().push(value);
                }
            }
        }
    }
    out
}

fn records() -> impl Strategy<Value = Vec<(u8, u8, i64)>> {
    // Times mostly increasing with some disorder, over a few windows.
    proptest::collection::vec((0u8..12, 0u8..60, -3_000i64..4_000), 1..120).prop_map(|r| {
        let mut t = 1_000_000;
        r.into_iter()
            .map(|(k, v, step)| {
                t = (t + step).max(0);
                (k, v, t)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn one_thread_and_four_give_the_same_output_per_key(clicks in records(), views in records()) {
        let (one, four) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (log, mut session) = setup(one.path(), &clicks, &views);
        session.properties.insert(STREAM_THREADS.into(), "1".into());
        session.run_until_idle().unwrap();
        let expected = outputs(&log);

        let (log, mut session) = setup(four.path(), &clicks, &views);
        session.properties.insert(STREAM_THREADS.into(), "4".into());
        session.run_in_background().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while session.lag_probe().total() > 0 {
            prop_assert!(Instant::now() < deadline, "the stream threads never caught up");
            std::thread::sleep(Duration::from_millis(5));
        }
        let actual = outputs(&log);
        session.shutdown();
        prop_assert_eq!(actual, expected);
    }
}

#[test]
fn a_query_runs_as_a_task_per_partition_of_each_sub_topology() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut session) = setup(dir.path(), &[(1, 30, 5)], &[(1, 3, 6)]);
    run(
        &mut session,
        "CREATE TABLE by_value AS SELECT v, COUNT(*) AS n FROM clicks GROUP BY v;",
    );
    let infos = session.query_infos();
    let tasks = |id: &str| -> Vec<String> {
        let q = infos.iter().find(|q| q.id == id).unwrap();
        q.tasks.iter().map(|t| t.id.clone()).collect()
    };
    assert_eq!(tasks("CTAS_COUNTS_0"), ["0_0", "0_1", "0_2", "0_3"]);
    assert_eq!(
        tasks("CTAS_BY_VALUE_3"),
        ["0_0", "0_1", "0_2", "0_3", "1_0", "1_1", "1_2", "1_3"]
    );
    let plan = &infos
        .iter()
        .find(|q| q.id == "CTAS_BY_VALUE_3")
        .unwrap()
        .plan;
    assert_eq!(plan[0], "Sub-topology 0 (4 tasks)");
    assert!(
        plan.iter().any(|l| l == "Sub-topology 1 (4 tasks)"),
        "{plan:?}"
    );
    // The threads the tasks run on: driven until the session runs them in the background.
    assert!(infos[0].tasks.iter().all(|t| t.thread == "driven"));
    session.properties.insert(STREAM_THREADS.into(), "2".into());
    session.run_in_background().unwrap();
    let threads: Vec<String> = session.query_infos()[0]
        .tasks
        .iter()
        .map(|t| t.thread.clone())
        .collect();
    assert_eq!(
        threads,
        [
            "stream-thread-1",
            "stream-thread-2",
            "stream-thread-1",
            "stream-thread-2"
        ]
    );
    // SET changes the number of threads; the tasks spread over them again.
    run(&mut session, "SET 'ksql.streams.num.stream.threads'='1';");
    assert!(session.query_infos()[0]
        .tasks
        .iter()
        .all(|t| t.thread == "stream-thread-1"));
    session.shutdown();
}

/// Rows of a pull query, as text.
fn pull(session: &mut Session, sql: &str) -> Vec<Vec<String>> {
    let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
    let eddy_sql::Outcome::Rows { rows, .. } = session.execute(&stmt, &text).unwrap() else {
        panic!("{sql} returns rows")
    };
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(eddy_sql::cell_text).collect())
        .collect();
    out.sort();
    out
}

/// A pull query that names its key reads the task that owns it (by the key's bytes in the
/// task's input), and finds a key a producer put elsewhere too; one that does not reads every
/// task's store.
#[test]
fn pull_queries_read_the_task_that_owns_the_key_or_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = setup(
        dir.path(),
        &(0..40)
            .map(|i| (i % 12, i, 1_000 + i64::from(i)))
            .collect::<Vec<_>>(),
        &[],
    );
    run(
        &mut session,
        "CREATE SOURCE TABLE users (id STRING PRIMARY KEY, name STRING)
           WITH (kafka_topic='users', value_format='JSON', partitions=4);
         CREATE TABLE per_key AS SELECT k, COUNT(*) AS n FROM clicks GROUP BY k;
         CREATE TABLE per_value AS SELECT v % 5 AS b, COUNT(*) AS n FROM clicks GROUP BY v % 5;",
    );
    // As a Kafka producer writes them: each in the partition its key's bytes choose.
    let users = log.topic("users").unwrap();
    for i in 0..20 {
        let key = format!("u{i}");
        let p = users.partition_for(Some(key.as_bytes()));
        let value = format!("{{\"NAME\":\"name {i}\"}}");
        users
            .partition(p)
            .unwrap()
            .append(&[Record::new(Some(key), Some(value), 5)])
            .unwrap();
    }
    // A key in a partition the default partitioner would not choose.
    let odd = "elsewhere";
    let p = (users.partition_for(Some(odd.as_bytes())) + 1) % PARTITIONS;
    users
        .partition(p)
        .unwrap()
        .append(&[Record::new(Some(odd), Some("{\"NAME\":\"odd\"}"), 5)])
        .unwrap();
    session.run_until_idle().unwrap();
    assert_eq!(
        pull(&mut session, "SELECT * FROM users WHERE id = 'u7';"),
        [["u7", "name 7"]]
    );
    assert_eq!(
        pull(&mut session, "SELECT * FROM users WHERE id = 'elsewhere';"),
        [["elsewhere", "odd"]]
    );
    assert_eq!(pull(&mut session, "SELECT * FROM users;").len(), 21);
    assert!(pull(&mut session, "SELECT * FROM users WHERE id = 'nobody';").is_empty());
    // k3 is in clicks 3, 15, 27 and 39.
    assert_eq!(
        pull(&mut session, "SELECT * FROM per_key WHERE k = 'k3';"),
        [["k3", "4"]]
    );
    assert_eq!(pull(&mut session, "SELECT * FROM per_key;").len(), 12);
    assert_eq!(
        pull(&mut session, "SELECT * FROM per_value WHERE b = 2;"),
        [["2", "8"]]
    );
    assert_eq!(pull(&mut session, "SELECT * FROM per_value;").len(), 5);
}
