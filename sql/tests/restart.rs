//! A persistent session survives a restart: the catalog comes back from the command topic and
//! each query resumes from its committed offsets, so no input is processed twice or skipped.

mod common;

use common::{produce, run, values};
use eddy_log::{Log, LogOptions};
use eddy_sql::Session;

fn output(log: &Log) -> Vec<String> {
    values(log, "BIG")
}

#[test]
fn catalog_and_queries_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        run(
            &mut session,
            "SET 'auto.offset.reset'='earliest';
             CREATE TYPE AMOUNT AS DOUBLE;
             CREATE STREAM orders (id INT, amount AMOUNT) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
             CREATE STREAM big AS SELECT id, amount FROM orders WHERE amount > 10;
             CREATE STREAM scratch (x INT) WITH (kafka_topic='scratch', value_format='JSON', partitions=1);
             DROP STREAM scratch DELETE TOPIC;",
        );
        produce(
            &log,
            "orders",
            &[r#"{"id":1,"amount":5}"#, r#"{"id":2,"amount":50}"#],
        );
        session.run_until_idle().unwrap();
        assert_eq!(output(&log), [r#"{"ID":2,"AMOUNT":50.0}"#]);
    }
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    assert!(session.catalog.source("ORDERS").is_some() && session.catalog.source("BIG").is_some());
    assert!(
        session.catalog.source("SCRATCH").is_none(),
        "the DROP was replayed too"
    );
    assert!(session.catalog.types.contains_key("AMOUNT"));
    assert_eq!(
        session
            .queries()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>(),
        ["CSAS_BIG_0"]
    );
    produce(&log, "orders", &[r#"{"id":3,"amount":70}"#]);
    session.run_until_idle().unwrap();
    assert_eq!(
        output(&log),
        [r#"{"ID":2,"AMOUNT":50.0}"#, r#"{"ID":3,"AMOUNT":70.0}"#],
        "nothing twice, nothing skipped"
    );
}

#[test]
fn queries_run_on_their_own_tasks_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    session.run_in_background().unwrap();
    run(
        &mut session,
        "CREATE STREAM orders (id INT, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
         CREATE STREAM big AS SELECT id, amount FROM orders WHERE amount > 10;",
    );
    produce(&log, "orders", &[r#"{"id":7,"amount":11}"#]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while output(&log).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background query never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(output(&log), [r#"{"ID":7,"AMOUNT":11.0}"#]);
    run(&mut session, "TERMINATE ALL;");
    assert_eq!(session.queries().count(), 0);
    produce(&log, "orders", &[r#"{"id":8,"amount":12}"#]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        output(&log).len(),
        1,
        "a terminated query writes nothing more"
    );
}

#[test]
fn an_aggregation_commits_when_it_catches_up_whatever_its_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    session.run_in_background().unwrap();
    run(
        &mut session,
        "SET 'commit.interval.ms'='3600000';
         CREATE STREAM orders (region STRING, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
         CREATE TABLE totals AS SELECT region, SUM(amount) AS total FROM orders GROUP BY region;",
    );
    produce(&log, "orders", &[r#"{"region":"eu","amount":11}"#]);
    // Readable (committed) output, long before an hour has passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while values(&log, "TOTALS").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the aggregation's output never became readable"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(values(&log, "TOTALS"), [r#"{"TOTAL":11.0}"#]);
}

#[test]
fn a_commit_interval_that_is_not_a_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "SET 'commit.interval.ms'='soon';
         CREATE STREAM orders (id INT KEY, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=1);",
    );
    let (stmt, text) = eddy_sql::parse_statements(
        "CREATE TABLE totals AS SELECT id, SUM(amount) AS total FROM orders GROUP BY id;",
    )
    .unwrap()
    .remove(0);
    let err = session.execute(&stmt, &text).unwrap_err().to_string();
    assert!(err.contains("commit.interval.ms"), "{err}");
}

#[test]
fn state_stores_moved_aside_are_rebuilt_from_their_changelogs() {
    let dir = tempfile::tempdir().unwrap();
    let script = "SET 'auto.offset.reset'='earliest';
         CREATE STREAM orders (region STRING, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=2);
         CREATE TABLE totals AS SELECT region, SUM(amount) AS total, COUNT(*) AS n FROM orders GROUP BY region;
         CREATE STREAM joined AS SELECT o.region, o.amount, t.n FROM orders o JOIN totals t ON o.region = t.region;";
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        run(&mut session, script);
        produce(
            &log,
            "orders",
            &[
                r#"{"region":"eu","amount":1}"#,
                r#"{"region":"us","amount":2}"#,
                r#"{"region":"eu","amount":3}"#,
            ],
        );
        session.run_until_idle().unwrap();
        assert_eq!(values(&log, "TOTALS").len(), 2);
    }
    // What `eddy` advises when RocksDB reports damage.
    std::fs::rename(dir.path().join("state"), dir.path().join("state.damaged")).unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    produce(&log, "orders", &[r#"{"region":"eu","amount":5}"#]);
    session.run_until_idle().unwrap();
    let totals = values(&log, "TOTALS");
    assert_eq!(
        totals.last().unwrap(),
        r#"{"TOTAL":9.0,"N":3}"#,
        "the sums went on from the rebuilt state: {totals:?}"
    );
    // Partition 0 holds the eu group: its three updates, none repeated.
    assert_eq!(totals.len(), 3, "nothing was aggregated twice: {totals:?}");
    let joined = values(&log, "JOINED");
    assert_eq!(joined.len(), 3, "nothing joined twice: {joined:?}");
    assert_eq!(joined.last().unwrap(), r#"{"AMOUNT":5.0,"N":3}"#);
}
