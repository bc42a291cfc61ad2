//! Stream-stream joins: records meet the other side's records within the window; outer joins
//! emit null-padded rows eagerly without a grace period and once the window closes with one;
//! the buffers survive a restart.

mod common;

use bytes::Bytes;
use common::{run, values};
use eddy_log::{Log, LogOptions, Record};
use eddy_sql::Session;

const STREAMS: &str = "SET 'auto.offset.reset'='earliest';
     CREATE STREAM orders (id INT KEY, region STRING, amount INT) WITH (kafka_topic='orders', partitions=1, value_format='JSON');
     CREATE STREAM shipments (id INT KEY, region STRING, carrier STRING) WITH (kafka_topic='shipments', partitions=1, value_format='JSON');";

/// Appends a record with key `key` at time `ts` to partition 0 of `topic`.
fn at(log: &Log, topic: &str, key: i32, value: &str, ts: i64) {
    let record = Record {
        key: Some(Bytes::copy_from_slice(&key.to_be_bytes())),
        value: Some(Bytes::from(value.to_string())),
        timestamp: ts,
        headers: Vec::new(),
    };
    log.partition(topic, 0).unwrap().append(&[record]).unwrap();
}

fn session(dir: &std::path::Path) -> (Log, Session) {
    let log = Log::open(dir, LogOptions::default()).unwrap();
    let session = Session::open(log.clone()).unwrap();
    (log, session)
}

/// Keys (as INT) and values of partition 0 of `topic`, with their timestamps.
fn rows(log: &Log, topic: &str) -> Vec<(i32, String, i64)> {
    log.partition(topic, 0)
        .unwrap()
        .read(0, eddy_log::ReadLimits::default())
        .unwrap()
        .into_iter()
        .map(|r| {
            let key = r.record.key.unwrap();
            (
                i32::from_be_bytes(key[..4].try_into().unwrap()),
                String::from_utf8(r.record.value.unwrap().to_vec()).unwrap(),
                r.record.timestamp,
            )
        })
        .collect()
}

#[test]
fn an_inner_join_matches_records_within_the_window_on_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = session(dir.path());
    run(
        &mut session,
        &format!(
            "{STREAMS}
             CREATE STREAM shipped AS SELECT o.id, amount, carrier
               FROM orders o JOIN shipments s WITHIN (1 SECOND, 5 SECONDS) ON o.id = s.id;"
        ),
    );
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 10_000);
    // After the order, within 5 s: joins, at the later of the two times.
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        14_000,
    );
    // Too late for order 1 (more than 5 s after it).
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"ups"}"#,
        15_001,
    );
    // An order up to 1 s after a shipment still joins it (the window's "before" side).
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":20}"#, 16_000);
    // Another key never matches.
    at(
        &log,
        "shipments",
        2,
        r#"{"REGION":"eu","CARRIER":"fedex"}"#,
        16_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        rows(&log, "SHIPPED"),
        [
            (1, r#"{"AMOUNT":10,"CARRIER":"dhl"}"#.to_string(), 14_000),
            (1, r#"{"AMOUNT":20,"CARRIER":"ups"}"#.to_string(), 16_000),
        ]
    );
}

#[test]
fn without_a_grace_period_an_outer_join_pads_eagerly() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = session(dir.path());
    run(
        &mut session,
        &format!(
            "{STREAMS}
             CREATE STREAM all_orders AS SELECT o.id, amount, carrier
               FROM orders o LEFT JOIN shipments s WITHIN 10 SECONDS ON o.id = s.id;"
        ),
    );
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 1_000);
    session.run_until_idle().unwrap();
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        2_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ALL_ORDERS"),
        [
            r#"{"AMOUNT":10,"CARRIER":null}"#,
            r#"{"AMOUNT":10,"CARRIER":"dhl"}"#
        ]
    );
}

#[test]
fn with_a_grace_period_an_outer_join_pads_once_the_window_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = session(dir.path());
    run(
        &mut session,
        &format!(
            "{STREAMS}
             CREATE STREAM all_orders AS SELECT o.id, amount, carrier
               FROM orders o LEFT JOIN shipments s WITHIN 10 SECONDS GRACE PERIOD 5 SECONDS
               ON o.id = s.id;"
        ),
    );
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 1_000);
    at(&log, "orders", 2, r#"{"REGION":"eu","AMOUNT":20}"#, 2_000);
    at(
        &log,
        "shipments",
        2,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        3_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ALL_ORDERS"),
        [r#"{"AMOUNT":20,"CARRIER":"dhl"}"#],
        "order 1 waits: a shipment may still come"
    );
    // Stream time reaches 1 s + 10 s + 5 s: order 1's window is still open (not past it).
    at(
        &log,
        "shipments",
        9,
        r#"{"REGION":"eu","CARRIER":"ups"}"#,
        16_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(values(&log, "ALL_ORDERS").len(), 1);
    at(
        &log,
        "shipments",
        9,
        r#"{"REGION":"eu","CARRIER":"ups"}"#,
        16_001,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        rows(&log, "ALL_ORDERS")[1],
        (1, r#"{"AMOUNT":10,"CARRIER":null}"#.to_string(), 1_000),
        "padded at the order's own time"
    );
}

#[test]
fn a_join_on_several_columns_needs_all_of_them_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = session(dir.path());
    run(
        &mut session,
        &format!(
            "{STREAMS}
             CREATE STREAM shipped WITH (key_format='JSON') AS SELECT o.id, o.region, amount, carrier
               FROM orders o JOIN shipments s WITHIN 1 MINUTE
               ON o.id = s.id AND o.region = s.region;"
        ),
    );
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 1_000);
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"us","CARRIER":"ups"}"#,
        2_000,
    );
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        3_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "SHIPPED"),
        [r#"{"AMOUNT":10,"CARRIER":"dhl"}"#]
    );
    let shipped = session.catalog.source("SHIPPED").unwrap();
    assert_eq!(
        shipped
            .key_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["O_ID", "O_REGION"],
        "one key column per equality (named as both sides have them)"
    );
}

#[test]
fn buffered_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, mut session) = session(dir.path());
        run(
            &mut session,
            &format!(
                "{STREAMS}
                 CREATE STREAM shipped AS SELECT o.id, amount, carrier
                   FROM orders o JOIN shipments s WITHIN 1 MINUTE ON o.id = s.id;"
            ),
        );
        at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 1_000);
        session.run_until_idle().unwrap();
    }
    let (log, mut session) = session(dir.path());
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        2_000,
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "SHIPPED"),
        [r#"{"AMOUNT":10,"CARRIER":"dhl"}"#],
        "the order was buffered before the restart, and is not joined twice"
    );
}

#[test]
fn stream_stream_joins_ksqldb_forbids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut session) = session(dir.path());
    run(&mut session, STREAMS);
    let fails = |session: &mut Session, sql: &str| {
        let (stmt, text) = eddy_sql::parse_statements(sql).unwrap().remove(0);
        session.execute(&stmt, &text).unwrap_err().to_string()
    };
    let e = fails(
        &mut session,
        "CREATE STREAM x AS SELECT * FROM orders o JOIN shipments s ON o.id = s.id;",
    );
    assert!(e.contains("WITHIN clause"), "{e}");
    let e = fails(
        &mut session,
        "CREATE STREAM x AS SELECT * FROM orders a JOIN orders b WITHIN 1 SECOND ON a.id = b.id;",
    );
    assert!(e.contains("self joins"), "{e}");
    let e = fails(
        &mut session,
        "CREATE STREAM x AS SELECT * FROM orders o JOIN shipments s WITHIN 1 SECOND ON o.id = s.region;",
    );
    assert!(e.contains("types don't match"), "{e}");
}

#[test]
fn a_backlog_on_one_side_is_read_in_event_time_order_with_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut session) = session(dir.path());
    run(&mut session, STREAMS);
    // Both sides' records are in the log before the query reads any: the left side's later
    // record must not close the window of its earlier one before the right side is read.
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":10}"#, 0);
    at(&log, "orders", 1, r#"{"REGION":"eu","AMOUNT":20}"#, 60_000);
    at(
        &log,
        "shipments",
        1,
        r#"{"REGION":"eu","CARRIER":"dhl"}"#,
        1_000,
    );
    run(
        &mut session,
        "CREATE STREAM all_orders AS SELECT o.id, amount, carrier
           FROM orders o LEFT JOIN shipments s WITHIN 10 SECONDS GRACE PERIOD 0 SECONDS
           ON o.id = s.id;",
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        values(&log, "ALL_ORDERS"),
        [r#"{"AMOUNT":10,"CARRIER":"dhl"}"#]
    );
}
