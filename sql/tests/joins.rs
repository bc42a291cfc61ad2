//! Stream-table joins: each stream record meets the table as it is when the record is
//! processed; table updates alone emit nothing.

mod common;

use common::{produce, run, values};
use eddy_log::{Log, LogOptions};
use eddy_sql::Session;

fn setup(join: &str) -> (tempfile::TempDir, Log, Session) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::new(log.clone());
    run(
        &mut session,
        &format!(
            "SET 'auto.offset.reset'='earliest';
             CREATE STREAM clicks (user STRING, page STRING) WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             CREATE TABLE users (id STRING PRIMARY KEY, name STRING, tier INT) WITH (kafka_topic='users', partitions=1, value_format='JSON');
             CREATE STREAM enriched AS SELECT c.user, page, name, u.tier AS tier
               FROM clicks c {join} users u ON c.user = u.id;"
        ),
    );
    (dir, log, session)
}

fn keyed(log: &Log, topic: &str, key: &str, value: &str) {
    let record = eddy_log::Record::new(Some(key.to_string()), Some(value.to_string()), 1);
    log.partition(topic, 0).unwrap().append(&[record]).unwrap();
}

#[test]
fn a_left_join_sees_the_table_as_of_each_record() {
    let (_dir, log, mut session) = setup("LEFT JOIN");
    produce(&log, "clicks", &[r#"{"USER":"ada","PAGE":"/a"}"#]);
    session.run_until_idle().unwrap();
    keyed(&log, "users", "ada", r#"{"NAME":"Ada","TIER":1}"#);
    session.run_until_idle().unwrap();
    produce(&log, "clicks", &[r#"{"USER":"ada","PAGE":"/b"}"#]);
    session.run_until_idle().unwrap();
    keyed(&log, "users", "ada", r#"{"NAME":"Ada L.","TIER":2}"#);
    session.run_until_idle().unwrap();
    produce(
        &log,
        "clicks",
        &[
            r#"{"USER":"ada","PAGE":"/c"}"#,
            r#"{"USER":"bob","PAGE":"/d"}"#,
        ],
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ENRICHED"),
        [
            r#"{"PAGE":"/a","NAME":null,"TIER":null}"#,
            r#"{"PAGE":"/b","NAME":"Ada","TIER":1}"#,
            r#"{"PAGE":"/c","NAME":"Ada L.","TIER":2}"#,
            r#"{"PAGE":"/d","NAME":null,"TIER":null}"#,
        ]
    );
    let def = session.catalog.source("ENRICHED").unwrap();
    assert_eq!(
        def.key_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["C_USER"]
    );
}

#[test]
fn an_inner_join_drops_records_without_a_match_and_deleted_rows_stop_matching() {
    let (_dir, log, mut session) = setup("JOIN");
    keyed(&log, "users", "ada", r#"{"NAME":"Ada","TIER":1}"#);
    session.run_until_idle().unwrap();
    produce(
        &log,
        "clicks",
        &[
            r#"{"USER":"ada","PAGE":"/a"}"#,
            r#"{"USER":"bob","PAGE":"/b"}"#,
        ],
    );
    session.run_until_idle().unwrap();
    // A tombstone deletes the row: later clicks by ada find nothing.
    log.partition("users", 0)
        .unwrap()
        .append(&[eddy_log::Record::new(Some("ada"), None::<&str>, 2)])
        .unwrap();
    session.run_until_idle().unwrap();
    produce(&log, "clicks", &[r#"{"USER":"ada","PAGE":"/c"}"#]);
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ENRICHED"),
        [r#"{"PAGE":"/a","NAME":"Ada","TIER":1}"#]
    );
}

#[test]
fn joins_ksqldb_forbids_are_rejected_with_its_messages() {
    let (_dir, _log, mut session) = setup("JOIN");
    let err = |session: &mut Session, sql: &str| {
        let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
        session.execute(&stmt, &text).unwrap_err().to_string()
    };
    assert_eq!(
        err(&mut session, "CREATE STREAM x AS SELECT * FROM clicks c FULL OUTER JOIN users u ON c.user = u.id;"),
        "Invalid join type: full-outer join not supported for stream-table join. Got CLICKS [FULL] OUTER JOIN USERS."
    );
    assert!(err(
        &mut session,
        "CREATE STREAM y AS SELECT * FROM users u JOIN clicks c ON c.user = u.id;"
    )
    .starts_with("Invalid join order: table-stream joins are not supported"));
}
