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

/// As in ksqlDB, pull queries read `CREATE SOURCE TABLE`s and `CREATE TABLE AS SELECT`s, with
/// their upserts and deletes; a plain `CREATE TABLE` is not kept for them, and says so.
#[test]
fn source_tables_and_derived_tables_answer_pull_queries_and_plain_tables_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=1);
         CREATE SOURCE TABLE source_users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON');
         CREATE TABLE queryable_users AS SELECT * FROM users;
         INSERT INTO users (id, name) VALUES ('1', 'ada');
         INSERT INTO users (id, name) VALUES ('2', 'bob');
         INSERT INTO users (id, name) VALUES ('1', 'ada lovelace');",
    );
    session.run_until_idle().unwrap();
    for table in ["source_users", "queryable_users"] {
        assert_eq!(
            pull(&mut session, &format!("SELECT * FROM {table};")),
            strings(&[&["1", "ada lovelace"], &["2", "bob"]]),
            "{table}"
        );
    }
    let (stmt, text) = parse_statements("SELECT * FROM users;").unwrap().remove(0);
    let refused = session.execute(&stmt, &text).unwrap_err().to_string();
    assert!(
        refused.contains("The `USERS` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_USERS AS SELECT * FROM USERS'."),
        "{refused}"
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
    session.run_until_idle().unwrap();
    for table in ["source_users", "queryable_users"] {
        assert_eq!(
            pull(&mut session, &format!("SELECT * FROM {table};")),
            strings(&[&["1", "ada lovelace"]]),
            "{table}"
        );
    }
}

/// Every table used to be materialized: a data directory from then still holds the rows of
/// plain tables' materializations, which nothing reads any more.
#[test]
fn a_plain_tables_old_materialization_is_dropped_on_start() {
    use eddy_engine::state::{Commit, StateDb, StateOptions};
    let dir = tempfile::tempdir().unwrap();
    let names = |db: &StateDb| -> Vec<String> {
        db.store_sizes()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    };
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log).unwrap();
        run(
            &mut session,
            "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=1);",
        );
    }
    {
        let db = StateDb::open(dir.path().join("state"), StateOptions::default()).unwrap();
        let mut commit = Commit::new();
        commit.put(&db.store("MATERIALIZE_USERS/rows").unwrap(), b"k", b"v");
        db.commit(commit).unwrap();
        assert_eq!(names(&db), ["MATERIALIZE_USERS/rows"]);
    }
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        Session::open(log).unwrap();
    }
    let db = StateDb::open(dir.path().join("state"), StateOptions::default()).unwrap();
    assert!(names(&db).is_empty(), "{:?}", names(&db));
}
