//! ksqlDB's PAUSE and RESUME: a paused query reads nothing until resumed, then goes on from
//! where it paused; the pause is recorded in the command topic, so it survives a restart.

mod common;

use common::{produce, run, values};
use eddy_log::{Log, LogOptions};
use eddy_sql::{parse_statements, Session};

fn status(session: &Session) -> String {
    session.query_infos().remove(0).status
}

#[test]
fn a_paused_query_waits_and_resumes_where_it_paused_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        run(
            &mut session,
            "SET 'auto.offset.reset'='earliest';
             CREATE STREAM orders (id INT, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=2);
             CREATE TABLE totals AS SELECT id, SUM(amount) AS total FROM orders GROUP BY id;",
        );
        produce(&log, "orders", &[r#"{"id":1,"amount":5}"#]);
        session.run_until_idle().unwrap();
        assert_eq!(values(&log, "TOTALS").len(), 1);
        run(&mut session, "PAUSE CTAS_TOTALS_0;");
        assert_eq!(status(&session), "PAUSED");
        produce(&log, "orders", &[r#"{"id":1,"amount":7}"#]);
        session.run_until_idle().unwrap();
        assert_eq!(
            values(&log, "TOTALS").len(),
            1,
            "a paused query reads nothing"
        );
    }
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    session.run_until_idle().unwrap();
    assert_eq!(status(&session), "PAUSED", "the pause survives a restart");
    assert_eq!(values(&log, "TOTALS").len(), 1);
    run(&mut session, "RESUME ALL;");
    assert_eq!(status(&session), "RUNNING");
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "TOTALS"),
        [r#"{"TOTAL":5.0}"#, r#"{"TOTAL":12.0}"#],
        "what came while paused is read once, after it"
    );
}

#[test]
fn pausing_an_unknown_query_says_so_and_background_tasks_pause_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM orders (id INT, amount DOUBLE) WITH (kafka_topic='orders', value_format='JSON', partitions=1);
         CREATE STREAM big AS SELECT id, amount FROM orders WHERE amount > 10;
         PAUSE ALL;",
    );
    let (stmt, text) = parse_statements("PAUSE nope;").unwrap().remove(0);
    let e = session.execute(&stmt, &text).unwrap_err().to_string();
    assert!(e.contains("Unknown queryId: NOPE"), "{e}");
    // Paused before they moved to the stream threads: they stay paused there.
    session.run_in_background().unwrap();
    produce(&log, "orders", &[r#"{"id":2,"amount":50}"#]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(values(&log, "BIG").is_empty());
    run(&mut session, "RESUME CSAS_BIG_0;");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while values(&log, "BIG").is_empty() {
        assert!(std::time::Instant::now() < deadline, "never resumed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(values(&log, "BIG"), [r#"{"ID":2,"AMOUNT":50.0}"#]);
    run(&mut session, "PAUSE CSAS_BIG_0;");
    assert_eq!(status(&session), "PAUSED");
    produce(&log, "orders", &[r#"{"id":3,"amount":60}"#]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(values(&log, "BIG").len(), 1);
    session.shutdown();
}
