//! ksqlDB's `processing.guarantee`: every value ksqlDB takes, under both names it takes them,
//! runs a stateless query (exactly-once ones through transactions); anything else is refused.

mod common;

use common::{produce, run, values};
use eddy_log::{Log, LogOptions};
use eddy_sql::{parse_statements, Session};

fn session_with(property: &str, value: &str) -> (tempfile::TempDir, Log, Session) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        &format!(
            "SET 'auto.offset.reset'='earliest'; SET '{property}'='{value}';
             CREATE STREAM orders (id INT, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=1);"
        ),
    );
    (dir, log, session)
}

#[test]
fn every_guarantee_ksqldb_takes_runs_a_stateless_query() {
    for property in ["processing.guarantee", "ksql.streams.processing.guarantee"] {
        for value in [
            "at_least_once",
            "exactly_once",
            "exactly_once_v2",
            "EXACTLY_ONCE_V2",
        ] {
            let (_dir, log, mut session) = session_with(property, value);
            run(
                &mut session,
                "CREATE STREAM big AS SELECT id, amount FROM orders WHERE amount > 10;",
            );
            produce(
                &log,
                "orders",
                &[r#"{"id":1,"amount":5}"#, r#"{"id":2,"amount":50}"#],
            );
            session.run_until_idle().unwrap();
            assert_eq!(
                values(&log, "BIG"),
                [r#"{"ID":2,"AMOUNT":50.0}"#],
                "{property}={value}"
            );
        }
    }
}

#[test]
fn an_unknown_guarantee_is_refused_with_the_values_there_are() {
    let (_dir, _log, mut session) = session_with("processing.guarantee", "at_most_once");
    let (stmt, text) = parse_statements("CREATE STREAM big AS SELECT id FROM orders;")
        .unwrap()
        .remove(0);
    let e = session.execute(&stmt, &text).unwrap_err().to_string();
    assert!(
        e.contains("Invalid value at_most_once for configuration processing.guarantee")
            && e.contains("at_least_once, exactly_once, exactly_once_v2"),
        "{e}"
    );
}
