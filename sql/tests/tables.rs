//! Tables: aggregations over streams and tables, materialization and pull queries, across a
//! restart.

mod common;

use common::{produce, run};
use eddy_log::{Log, LogOptions};
use eddy_sql::{cell_text, parse_statements, Outcome, Session};

fn pull(session: &mut Session, sql: &str) -> Vec<Vec<String>> {
    let (stmt, text) = parse_statements(sql).unwrap().remove(0);
    match session.execute(&stmt, &text).unwrap() {
        Outcome::Rows { rows, .. } => {
            let mut rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(cell_text).collect())
                .collect();
            rows.sort();
            rows
        }
        other => panic!("{sql}: expected rows, got {other:?}"),
    }
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

#[test]
fn aggregates_answer_pull_queries_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        run(
            &mut session,
            "SET 'auto.offset.reset'='earliest';
             CREATE STREAM orders (region STRING, amount INT) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
             CREATE TABLE by_region AS SELECT region, COUNT(*) AS n, SUM(amount) AS total
               FROM orders GROUP BY region HAVING SUM(amount) > 5;",
        );
        produce(
            &log,
            "orders",
            &[
                r#"{"region":"eu","amount":4}"#,
                r#"{"region":"us","amount":10}"#,
                r#"{"region":"eu","amount":3}"#,
            ],
        );
        assert_eq!(
            pull(&mut session, "SELECT * FROM by_region;"),
            strings(&[&["eu", "2", "7"], &["us", "1", "10"]])
        );
        assert_eq!(
            pull(
                &mut session,
                "SELECT total FROM by_region WHERE region = 'us';"
            ),
            strings(&[&["10"]])
        );
    }
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    produce(&log, "orders", &[r#"{"region":"eu","amount":1}"#]);
    assert_eq!(
        pull(&mut session, "SELECT * FROM by_region;"),
        strings(&[&["eu", "3", "8"], &["us", "1", "10"]]),
        "the aggregate resumed from its state: nothing counted twice"
    );
}

#[test]
fn a_table_source_is_materialized_with_upserts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=1);
         INSERT INTO users (id, name) VALUES ('1', 'ada');
         INSERT INTO users (id, name) VALUES ('2', 'bob');
         INSERT INTO users (id, name) VALUES ('1', 'ada lovelace');",
    );
    assert_eq!(
        pull(&mut session, "SELECT * FROM users;"),
        strings(&[&["1", "ada lovelace"], &["2", "bob"]])
    );
    // A tombstone deletes the key.
    log.partition("users", 0)
        .unwrap()
        .append(&[eddy_log::Record {
            key: Some(bytes::Bytes::from("2")),
            value: None,
            timestamp: 5,
            headers: Vec::new(),
        }])
        .unwrap();
    assert_eq!(
        pull(&mut session, "SELECT * FROM users;"),
        strings(&[&["1", "ada lovelace"]])
    );
}
