//! Stream-table joins: each stream record meets the table as it is when the record is
//! processed; table updates alone emit nothing.

mod common;

use common::{produce, run, values};
use eddy_log::{Log, LogOptions};
use eddy_sql::Session;

/// A session on a fresh log, after `statements`.
fn with_statements(statements: &str) -> (tempfile::TempDir, Log, Session) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::new(log.clone());
    run(&mut session, statements);
    (dir, log, session)
}

fn setup(join: &str) -> (tempfile::TempDir, Log, Session) {
    with_statements(
        &format!(
            "SET 'auto.offset.reset'='earliest';
             CREATE STREAM clicks (user STRING, page STRING) WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             CREATE TABLE users (id STRING PRIMARY KEY, name STRING, tier INT) WITH (kafka_topic='users', partitions=1, value_format='JSON');
             CREATE STREAM enriched AS SELECT c.user, page, name, u.tier AS tier
               FROM clicks c {join} users u ON c.user = u.id;"
        ),
    )
}

/// The values of partition 0 of `topic`, tombstones as `null`.
fn values_or_null(log: &Log, topic: &str) -> Vec<String> {
    log.partition(topic, 0)
        .unwrap()
        .read(0, eddy_log::ReadLimits::default())
        .unwrap()
        .into_iter()
        .map(|r| {
            r.record
                .value
                .map_or("null".into(), |v| String::from_utf8(v.to_vec()).unwrap())
        })
        .collect()
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
    // A qualified column keeps its name when only one side has a column of that name.
    let def = session.catalog.source("ENRICHED").unwrap();
    assert_eq!(
        def.key_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["USER"]
    );
}

/// Appends `value` under `key` to `topic`, stamped `time`.
fn at(log: &Log, topic: &str, key: &str, value: &str, time: i64) {
    let record = eddy_log::Record::new(Some(key.to_string()), Some(value.to_string()), time);
    log.partition(topic, 0).unwrap().append(&[record]).unwrap();
}

/// The join keeps its own copy of the table, read to its end before each read of the stream:
/// a click meets every table row appended before it was read, whatever their timestamps, and
/// whenever the table's materialization gets to them.
#[test]
fn a_stream_table_join_sees_every_table_row_appended_before_the_record() {
    let (_dir, log, mut session) = setup("LEFT JOIN");
    at(&log, "users", "ada", r#"{"NAME":"Ada","TIER":1}"#, 50);
    at(&log, "clicks", "k", r#"{"USER":"ada","PAGE":"/a"}"#, 10);
    session.run_until_idle().unwrap();
    at(&log, "users", "ada", r#"{"NAME":"Ada L.","TIER":2}"#, 60);
    at(&log, "clicks", "k", r#"{"USER":"ada","PAGE":"/b"}"#, 20);
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ENRICHED"),
        [
            r#"{"PAGE":"/a","NAME":"Ada","TIER":1}"#,
            r#"{"PAGE":"/b","NAME":"Ada L.","TIER":2}"#,
        ]
    );
    // A table an aggregation keeps (it has no materialization of its own) joins as well.
    run(
        &mut session,
        "CREATE TABLE visits AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;
         CREATE STREAM counted AS SELECT c.user, page, n FROM clicks c JOIN visits v ON c.user = v.user;",
    );
    session.run_until_idle().unwrap();
    at(&log, "clicks", "k", r#"{"USER":"ada","PAGE":"/c"}"#, 40);
    session.run_until_idle().unwrap();
    let counted = values(&log, "COUNTED");
    assert_eq!(
        counted.last().unwrap(),
        r#"{"PAGE":"/c","N":3}"#,
        "{counted:?}"
    );
    // A windowed table's copy would be keyed without its windows: refused, as ksqlDB does.
    run(
        &mut session,
        "CREATE TABLE recent AS SELECT user, COUNT(*) AS n FROM clicks WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;",
    );
    let sql = "CREATE STREAM windowed AS SELECT c.user, n FROM clicks c JOIN recent r ON c.user = r.user;";
    let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
    let err = session.execute(&stmt, &text).unwrap_err().to_string();
    assert!(
        err.contains("Can not join windowed source to non-windowed source"),
        "{err}"
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

#[test]
fn a_table_table_join_follows_changes_on_both_sides() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', partitions=1, value_format='JSON');
         CREATE TABLE tiers (id STRING PRIMARY KEY, tier INT) WITH (kafka_topic='tiers', partitions=1, value_format='JSON');
         CREATE TABLE joined AS SELECT u.id, name, tier FROM users u JOIN tiers t ON u.id = t.id;",
    );
    let step = |session: &mut Session, topic: &str, key: &str, value: Option<&str>| {
        let record = eddy_log::Record::new(Some(key.to_string()), value.map(str::to_string), 1);
        log.partition(topic, 0).unwrap().append(&[record]).unwrap();
        session.run_until_idle().unwrap();
    };
    // A left row alone joins nothing and emits nothing.
    step(&mut session, "users", "ada", Some(r#"{"NAME":"Ada"}"#));
    step(&mut session, "tiers", "ada", Some(r#"{"TIER":1}"#));
    step(&mut session, "users", "ada", Some(r#"{"NAME":"Ada L."}"#));
    step(&mut session, "tiers", "ada", Some(r#"{"TIER":2}"#));
    // Deleting one side deletes the joined row; deleting it again changes nothing.
    step(&mut session, "tiers", "ada", None);
    step(&mut session, "users", "ada", None);
    assert_eq!(
        values_or_null(&log, "JOINED"),
        [
            r#"{"NAME":"Ada","TIER":1}"#,
            r#"{"NAME":"Ada L.","TIER":1}"#,
            r#"{"NAME":"Ada L.","TIER":2}"#,
            "null",
        ]
    );
}

/// A table's header column in a table-table join comes with its row: the header of the record
/// that last wrote it, whichever side's change the join is processing.
#[test]
fn a_table_table_join_carries_each_rows_header_column() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE users (id STRING PRIMARY KEY, name STRING, src BYTES HEADER('src')) WITH (kafka_topic='users', partitions=1, value_format='JSON');
         CREATE TABLE tiers (id STRING PRIMARY KEY, tier INT) WITH (kafka_topic='tiers', partitions=1, value_format='JSON');
         CREATE TABLE joined AS SELECT u.id, name, src, tier FROM users u JOIN tiers t ON u.id = t.id;",
    );
    let mut user = eddy_log::Record::new(Some("ada"), Some(r#"{"NAME":"Ada"}"#), 1);
    user.headers.push(eddy_log::Header {
        name: "src".into(),
        value: Some(bytes::Bytes::from_static(b"!")),
    });
    log.partition("users", 0).unwrap().append(&[user]).unwrap();
    session.run_until_idle().unwrap();
    // The change on the side without the header column finds it in the stored user row.
    keyed(&log, "tiers", "ada", r#"{"TIER":1}"#);
    session.run_until_idle().unwrap();
    assert_eq!(
        values_or_null(&log, "JOINED"),
        [r#"{"NAME":"Ada","SRC":"IQ==","TIER":1}"#]
    );
}

/// The join keeps its own copy of both tables: changes meet each other in the order the join
/// reads them, whenever the tables' materializations get to them, and a query started at the
/// tables' end (`latest`) still knows the rows from before it.
#[test]
fn a_table_table_join_reads_both_tables_itself_from_their_start() {
    let (_dir, log, mut session) = with_statements(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', partitions=1, value_format='JSON');
         CREATE TABLE tiers (id STRING PRIMARY KEY, tier INT) WITH (kafka_topic='tiers', partitions=1, value_format='JSON');",
    );
    keyed(&log, "users", "ada", r#"{"NAME":"Ada"}"#);
    keyed(&log, "users", "bob", r#"{"NAME":"Bob"}"#);
    keyed(&log, "tiers", "ada", r#"{"TIER":1}"#);
    session.run_until_idle().unwrap();
    run(
        &mut session,
        "CREATE TABLE joined AS SELECT u.id, name, tier FROM users u JOIN tiers t ON u.id = t.id;",
    );
    // Both sides change before the query first runs (so before its copies of the tables are
    // whole), and before the tables' materializations.
    keyed(&log, "users", "ada", r#"{"NAME":"Ada L."}"#);
    keyed(&log, "tiers", "bob", r#"{"TIER":2}"#);
    session.run_until_idle().unwrap();
    let delete = |topic: &str| {
        let record = eddy_log::Record::new(Some("ada".to_string()), None::<String>, 1);
        log.partition(topic, 0).unwrap().append(&[record]).unwrap();
    };
    // Deleting both sides of a joined row at once retracts it once.
    delete("users");
    delete("tiers");
    session.run_until_idle().unwrap();
    // Both changes from before the first run join (in the order the join read its tables,
    // the seeds first), and nothing from before the query does by itself.
    assert_eq!(
        values_or_null(&log, "JOINED"),
        [
            r#"{"NAME":"Bob","TIER":2}"#,
            r#"{"NAME":"Ada L.","TIER":1}"#,
            "null",
        ]
    );
}

#[test]
fn a_full_outer_table_join_keys_its_rows_by_a_synthetic_rowkey() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE l (id INT PRIMARY KEY, a INT) WITH (kafka_topic='l', partitions=1, value_format='JSON');
         CREATE TABLE r (id INT PRIMARY KEY, b INT) WITH (kafka_topic='r', partitions=1, value_format='JSON');
         CREATE TABLE o AS SELECT ROWKEY, l.id, r.id, a, b FROM l FULL OUTER JOIN r ON l.id = r.id;",
    );
    let int_key = |k: i32| k.to_be_bytes().to_vec();
    let step = |session: &mut Session, topic: &str, key: i32, value: Option<&str>| {
        let record = eddy_log::Record::new(Some(int_key(key)), value.map(str::to_string), 1);
        log.partition(topic, 0).unwrap().append(&[record]).unwrap();
        session.run_until_idle().unwrap();
    };
    step(&mut session, "r", 7, Some(r#"{"B":70}"#));
    step(&mut session, "l", 7, Some(r#"{"A":7}"#));
    step(&mut session, "r", 7, None);
    step(&mut session, "l", 7, None);
    assert_eq!(
        values_or_null(&log, "O"),
        [
            r#"{"L_ID":null,"R_ID":7,"A":null,"B":70}"#,
            r#"{"L_ID":7,"R_ID":7,"A":7,"B":70}"#,
            r#"{"L_ID":7,"R_ID":null,"A":7,"B":null}"#,
            "null",
        ]
    );
    let def = session.catalog.source("O").unwrap();
    assert_eq!(def.key_columns[0].name, "ROWKEY");
}

#[test]
fn a_stream_join_expression_keys_the_result_by_the_table_column() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM visits (url STRING) WITH (kafka_topic='visits', partitions=1, value_format='JSON');
         CREATE TABLE sites (host STRING PRIMARY KEY, owner STRING) WITH (kafka_topic='sites', partitions=1, value_format='JSON');
         CREATE STREAM owned AS SELECT s.host, url, owner
           FROM visits v JOIN sites s ON SUBSTRING(v.url, 1, 3) = s.host;",
    );
    keyed(&log, "sites", "abc", r#"{"OWNER":"ada"}"#);
    session.run_until_idle().unwrap();
    produce(
        &log,
        "visits",
        &[r#"{"URL":"abc/x"}"#, r#"{"URL":"xyz/y"}"#],
    );
    session.run_until_idle().unwrap();
    assert_eq!(values(&log, "OWNED"), [r#"{"URL":"abc/x","OWNER":"ada"}"#]);
    let def = session.catalog.source("OWNED").unwrap();
    assert_eq!(def.key_columns[0].name, "HOST");
}

#[test]
fn a_foreign_key_join_follows_changes_on_both_sides_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let step = |log: &Log, session: &mut Session, topic: &str, key: &str, value: Option<&str>| {
        let record = eddy_log::Record::new(Some(key.to_string()), value.map(str::to_string), 1);
        log.partition(topic, 0).unwrap().append(&[record]).unwrap();
        session.run_until_idle().unwrap();
    };
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        run(
            &mut session,
            "SET 'auto.offset.reset'='earliest';
             CREATE TABLE orders (id STRING PRIMARY KEY, customer STRING, amount INT) WITH (kafka_topic='orders', partitions=1, value_format='JSON');
             CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='customers', partitions=1, value_format='JSON');
             CREATE TABLE named AS SELECT o.id, amount, name
               FROM orders o LEFT JOIN customers c ON o.customer = c.id;",
        );
        // An order before its customer: padded with nulls (LEFT).
        step(
            &log,
            &mut session,
            "orders",
            "o1",
            Some(r#"{"CUSTOMER":"ada","AMOUNT":5}"#),
        );
        step(
            &log,
            &mut session,
            "customers",
            "ada",
            Some(r#"{"NAME":"Ada"}"#),
        );
        step(
            &log,
            &mut session,
            "orders",
            "o2",
            Some(r#"{"CUSTOMER":"ada","AMOUNT":7}"#),
        );
    }
    // After a restart the index still knows which orders refer to ada.
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    step(
        &log,
        &mut session,
        "customers",
        "ada",
        Some(r#"{"NAME":"Ada L."}"#),
    );
    // An order moving to another customer no longer follows ada.
    step(
        &log,
        &mut session,
        "orders",
        "o1",
        Some(r#"{"CUSTOMER":"bob","AMOUNT":5}"#),
    );
    step(&log, &mut session, "customers", "ada", None);
    step(&log, &mut session, "orders", "o2", None);
    assert_eq!(
        values_or_null(&log, "NAMED"),
        [
            r#"{"AMOUNT":5,"NAME":null}"#,
            r#"{"AMOUNT":5,"NAME":"Ada"}"#,
            r#"{"AMOUNT":7,"NAME":"Ada"}"#,
            // ada renamed: both her orders, in key order.
            r#"{"AMOUNT":5,"NAME":"Ada L."}"#,
            r#"{"AMOUNT":7,"NAME":"Ada L."}"#,
            r#"{"AMOUNT":5,"NAME":null}"#,
            // ada deleted: only o2 still refers to her.
            r#"{"AMOUNT":7,"NAME":null}"#,
            "null",
        ]
    );
}

#[test]
fn an_n_way_join_enriches_a_stream_with_two_tables_and_stops_as_one_query() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM orders (id STRING KEY, customer STRING, product STRING) WITH (kafka_topic='orders', partitions=1, value_format='JSON');
         CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='customers', partitions=1, value_format='JSON');
         CREATE TABLE products (id STRING PRIMARY KEY, title STRING) WITH (kafka_topic='products', partitions=1, value_format='JSON');
         CREATE STREAM detailed AS SELECT p.id, o.id AS order_id, name, title
           FROM orders o JOIN customers c ON o.customer = c.id
           LEFT JOIN products p ON o.product = p.id;",
    );
    keyed(&log, "customers", "ada", r#"{"NAME":"Ada"}"#);
    keyed(&log, "products", "p1", r#"{"TITLE":"Pen"}"#);
    session.run_until_idle().unwrap();
    keyed(&log, "orders", "o1", r#"{"CUSTOMER":"ada","PRODUCT":"p1"}"#);
    keyed(&log, "orders", "o2", r#"{"CUSTOMER":"ada","PRODUCT":"p9"}"#);
    keyed(&log, "orders", "o3", r#"{"CUSTOMER":"bob","PRODUCT":"p1"}"#);
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "DETAILED"),
        [
            r#"{"ORDER_ID":"o1","NAME":"Ada","TITLE":"Pen"}"#,
            r#"{"ORDER_ID":"o2","NAME":"Ada","TITLE":null}"#,
        ]
    );
    // The hidden step is neither a stream users see nor left behind.
    let shown = format!(
        "{:?}",
        session
            .execute(
                &eddy_sql::parse_statements("SHOW STREAMS;").unwrap()[0].0,
                "SHOW STREAMS;"
            )
            .unwrap()
    );
    assert!(!shown.contains("__JOIN_"), "{shown}");
    run(&mut session, "TERMINATE ALL; DROP STREAM detailed;");
    assert!(session
        .catalog
        .sources
        .keys()
        .all(|k| !k.starts_with("__JOIN_")));
}

#[test]
fn an_n_way_join_of_tables_follows_changes_on_every_side() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE a (id STRING PRIMARY KEY, x INT) WITH (kafka_topic='a', partitions=1, value_format='JSON');
         CREATE TABLE b (id STRING PRIMARY KEY, y INT) WITH (kafka_topic='b', partitions=1, value_format='JSON');
         CREATE TABLE c (id STRING PRIMARY KEY, z INT) WITH (kafka_topic='c', partitions=1, value_format='JSON');
         CREATE TABLE abc AS SELECT a.id, x, y, z FROM a JOIN b ON a.id = b.id JOIN c ON a.id = c.id;",
    );
    let step = |session: &mut Session, topic: &str, value: Option<&str>| {
        let record = eddy_log::Record::new(Some("k".to_string()), value.map(str::to_string), 1);
        log.partition(topic, 0).unwrap().append(&[record]).unwrap();
        session.run_until_idle().unwrap();
    };
    step(&mut session, "a", Some(r#"{"X":1}"#));
    step(&mut session, "c", Some(r#"{"Z":3}"#));
    step(&mut session, "b", Some(r#"{"Y":2}"#));
    step(&mut session, "c", Some(r#"{"Z":4}"#));
    step(&mut session, "b", None);
    assert_eq!(
        values_or_null(&log, "ABC"),
        [r#"{"X":1,"Y":2,"Z":3}"#, r#"{"X":1,"Y":2,"Z":4}"#, "null"]
    );
}

#[test]
fn a_failed_n_way_join_leaves_no_steps_behind() {
    let (_dir, _log, mut session) = with_statements(
        "CREATE STREAM s (id STRING KEY, a STRING, b STRING) WITH (kafka_topic='s', partitions=1, value_format='JSON');
         CREATE TABLE t1 (id STRING PRIMARY KEY, x INT) WITH (kafka_topic='t1', partitions=1, value_format='JSON');
         CREATE TABLE t2 (id STRING PRIMARY KEY, y INT) WITH (kafka_topic='t2', partitions=1, value_format='JSON');",
    );
    let sql = "CREATE STREAM o AS SELECT s.id, x, nope FROM s JOIN t1 ON s.a = t1.id JOIN t2 ON s.b = t2.id;";
    let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
    assert!(session.execute(&stmt, &text).is_err());
    assert!(session
        .catalog
        .sources
        .keys()
        .all(|k| !k.starts_with("__JOIN_")));
    assert_eq!(session.queries().count(), 0);
    // Fixed, the same statement now works.
    run(
        &mut session,
        "CREATE STREAM o AS SELECT t2.id, x, y FROM s JOIN t1 ON s.a = t1.id JOIN t2 ON s.b = t2.id;",
    );
}

/// Polls a push query until it has shown `n` rows (or gives up), as text.
fn push_rows(query: &mut eddy_sql::PushQuery, n: usize) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for _ in 0..50 {
        for row in query.poll(std::time::Duration::from_millis(10)).unwrap() {
            let cells = row.cells.iter().map(eddy_sql::cell_text);
            rows.push(cells.collect());
        }
        if rows.len() >= n {
            break;
        }
    }
    rows
}

#[test]
fn an_n_way_join_runs_as_a_push_query_and_leaves_nothing_behind() {
    let (_dir, log, mut session) = with_statements(
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM orders (id STRING KEY, customer STRING, product STRING) WITH (kafka_topic='orders', partitions=1, value_format='JSON');
         CREATE TABLE customers (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='customers', partitions=1, value_format='JSON');
         CREATE TABLE products (id STRING PRIMARY KEY, title STRING) WITH (kafka_topic='products', partitions=1, value_format='JSON');",
    );
    keyed(&log, "customers", "ada", r#"{"NAME":"Ada"}"#);
    keyed(&log, "products", "p1", r#"{"TITLE":"Pen"}"#);
    keyed(&log, "orders", "o1", r#"{"CUSTOMER":"ada","PRODUCT":"p1"}"#);
    let push = |session: &mut Session, sql: &str| {
        let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
        match session.execute(&stmt, &text).unwrap() {
            eddy_sql::Outcome::Push(q) => q,
            other => panic!("not a push query: {other:?}"),
        }
    };
    let mut orders = push(
        &mut session,
        "SELECT o.id AS order_id, name, title FROM orders o
           JOIN customers c ON o.customer = c.id
           LEFT JOIN products p ON o.product = p.id EMIT CHANGES;",
    );
    assert_eq!(push_rows(&mut orders, 1), [["o1", "Ada", "Pen"]]);
    keyed(&log, "orders", "o2", r#"{"CUSTOMER":"ada","PRODUCT":"p9"}"#);
    keyed(&log, "orders", "o3", r#"{"CUSTOMER":"bob","PRODUCT":"p1"}"#);
    assert_eq!(push_rows(&mut orders, 1), [["o2", "Ada", "null"]]);

    // Tables: each change on any side shows the joined row as it now is.
    run(
        &mut session,
        "CREATE TABLE a (id STRING PRIMARY KEY, x INT) WITH (kafka_topic='a', partitions=1, value_format='JSON');
         CREATE TABLE b (id STRING PRIMARY KEY, y INT) WITH (kafka_topic='b', partitions=1, value_format='JSON');
         CREATE TABLE c (id STRING PRIMARY KEY, z INT) WITH (kafka_topic='c', partitions=1, value_format='JSON');",
    );
    keyed(&log, "a", "k", r#"{"X":1}"#);
    keyed(&log, "b", "k", r#"{"Y":2}"#);
    // From the end: the rows already joined by the first step still reach the second.
    run(&mut session, "SET 'auto.offset.reset'='latest';");
    let mut abc = push(
        &mut session,
        "SELECT a.id, x, y, z FROM a JOIN b ON a.id = b.id JOIN c ON a.id = c.id EMIT CHANGES;",
    );
    assert!(push_rows(&mut abc, 1).is_empty());
    keyed(&log, "c", "k", r#"{"Z":3}"#);
    assert_eq!(push_rows(&mut abc, 1), [["k", "1", "2", "3"]]);
    keyed(&log, "b", "k", r#"{"Y":5}"#);
    assert_eq!(push_rows(&mut abc, 1), [["k", "1", "5", "3"]]);

    // The steps were the queries' own: no source, and no topic once they end.
    assert!(session.catalog.sources.keys().all(|k| !k.contains("JOIN")));
    drop((orders, abc));
    let topics: Vec<String> = log.topics().iter().map(|t| t.name().to_string()).collect();
    assert!(
        topics.iter().all(|t| !t.contains("transient")),
        "{topics:?}"
    );
    // A process that ended without ending its push queries left their topics: the next start
    // deletes them.
    let left = "_eddy-transient_ORDERS_9-join-1";
    log.create_topic(left, Default::default()).unwrap();
    drop(Session::open(log.clone()).unwrap());
    assert!(log.topic(left).is_err());
}
