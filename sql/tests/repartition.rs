//! Where ksqlDB repartitions, so does Eddy: a stream aggregated by other than its key, a
//! table's aggregation, an aggregation after a join, a join side keyed by other than its join
//! expression; a stream aggregated by its key needs no repartition topic.

mod common;

use bytes::Bytes;
use common::run;
use eddy_log::{Log, LogOptions, Record, TopicConfig};
use eddy_sql::{cell_text, parse_statements, Outcome, Session};

const TOPIC: &str = "_eddy-CTAS_TOTALS_0-Aggregate-GroupBy-repartition";

fn execute(session: &mut Session, sql: &str) -> Outcome {
    let (stmt, text) = parse_statements(sql).unwrap().remove(0);
    session.execute(&stmt, &text).unwrap()
}

/// Orders over three partitions, each in the partition its key chooses (as a Kafka producer
/// puts it, which is what lets a join's task `p` find its matches in partition `p`): region
/// `r{i % 2}`, amount `i`.
fn orders(log: &Log) {
    let topic = log
        .create_topic("orders", TopicConfig::with_partitions(3))
        .unwrap();
    for i in 0..30u32 {
        let record = Record {
            key: Some(Bytes::from(format!("order{i}"))),
            value: Some(Bytes::from(format!(
                r#"{{"REGION":"r{}","AMOUNT":{i}}}"#,
                i % 2
            ))),
            timestamp: i64::from(i),
            headers: Vec::new(),
        };
        let p = topic.partition_for(record.key.as_deref());
        topic.partition(p).unwrap().append(&[record]).unwrap();
    }
}

/// A session over the orders, read from the start.
fn with_orders() -> (tempfile::TempDir, Log, Session) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    orders(&log);
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM orders (id STRING KEY, region STRING, amount INT) WITH (kafka_topic='orders', value_format='JSON');",
    );
    (dir, log, session)
}

/// The orders, and a table of 3 partitions managing region `r0` by ann, `r1` by `r1_manager`.
fn with_regions(r1_manager: &str) -> (tempfile::TempDir, Log, Session) {
    let (dir, log, mut session) = with_orders();
    run(
        &mut session,
        &format!(
            "CREATE TABLE regions (name STRING PRIMARY KEY, manager STRING) WITH (kafka_topic='regions', value_format='JSON', partitions=3);
             INSERT INTO regions (name, manager) VALUES ('r0', 'ann');
             INSERT INTO regions (name, manager) VALUES ('r1', '{r1_manager}');"
        ),
    );
    session.run_until_idle().unwrap();
    (dir, log, session)
}

fn totals(session: &mut Session) -> Vec<(String, String)> {
    let Outcome::Rows { rows, .. } = execute(session, "SELECT * FROM TOTALS;") else {
        panic!("a pull query returns rows")
    };
    let mut out: Vec<(String, String)> = rows
        .iter()
        .map(|r| (cell_text(&r[0]), cell_text(&r[1])))
        .collect();
    out.sort();
    out
}

#[test]
fn grouping_by_a_value_column_goes_through_a_repartition_topic() {
    let (_dir, log, mut session) = with_orders();
    run(
        &mut session,
        "CREATE TABLE totals AS SELECT region, SUM(amount) AS total FROM orders WHERE amount > 1 GROUP BY region;",
    );
    session.run_until_idle().unwrap();
    // 2 + 4 + ... + 28 and 3 + 5 + ... + 29.
    let expected = vec![("r0".into(), "210".into()), ("r1".into(), "224".into())];
    assert_eq!(totals(&mut session), expected);
    let topic = log.topic(TOPIC).expect("a repartition topic");
    assert_eq!(
        topic.partition_count(),
        3,
        "as many partitions as the source"
    );
    // Each region's rows are in the partition its key chooses, and only there.
    let mut records_per_partition = Vec::new();
    for p in topic.partitions() {
        records_per_partition.push(p.end_offset());
    }
    assert_eq!(records_per_partition.iter().sum::<u64>(), 28);
    assert_eq!(
        records_per_partition.iter().filter(|&&n| n > 0).count(),
        2,
        "two keys, two partitions: {records_per_partition:?}"
    );
    let Outcome::Message(plan) = execute(&mut session, "EXPLAIN CTAS_TOTALS_0;") else {
        panic!("EXPLAIN describes the query")
    };
    assert!(plan.contains(&format!("Sink: topic {TOPIC}")), "{plan}");

    // After a restart, new input is counted once, old input not again.
    drop(session);
    let mut session = Session::open(log.clone()).unwrap();
    common::produce(&log, "orders", &[r#"{"REGION":"r0","AMOUNT":100}"#]);
    session.run_until_idle().unwrap();
    let expected = vec![("r0".into(), "310".into()), ("r1".into(), "224".into())];
    assert_eq!(totals(&mut session), expected);

    run(&mut session, "TERMINATE ALL;");
    assert!(log.topic(TOPIC).is_err(), "the topic goes with the query");
}

#[test]
fn grouping_by_the_key_needs_no_repartition_topic() {
    let (_dir, log, mut session) = with_orders();
    run(
        &mut session,
        "CREATE TABLE totals AS SELECT id, SUM(amount) AS total FROM orders GROUP BY id;",
    );
    session.run_until_idle().unwrap();
    assert!(log
        .topics()
        .iter()
        .all(|t| !t.name().ends_with("-repartition")));
}

fn repartition_topics(log: &Log) -> Vec<String> {
    let mut names: Vec<String> = log
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.ends_with("-repartition"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_join_side_keyed_by_other_than_its_join_expression_is_repartitioned() {
    let (_dir, log, mut session) = with_regions("bob");
    run(
        &mut session,
        "CREATE STREAM enriched AS SELECT o.region, o.amount, r.manager FROM orders o JOIN regions r ON o.region = r.name;
         CREATE STREAM by_id AS SELECT o.id, o.amount, r.manager FROM orders o JOIN regions r ON o.id = r.name;",
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        repartition_topics(&log),
        ["_eddy-CSAS_ENRICHED_0-Join-left-repartition"],
        "only the side joined on a value column"
    );
    let topic = log.topic("ENRICHED").unwrap();
    let mut joined: Vec<String> = topic
        .partitions()
        .iter()
        .flat_map(|p| p.read(0, eddy_log::ReadLimits::default()).unwrap())
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect();
    joined.sort();
    assert_eq!(joined.len(), 30);
    assert!(joined.contains(&r#"{"AMOUNT":7,"MANAGER":"bob"}"#.to_string()));
    assert_eq!(
        topic.partition_count(),
        3,
        "the output keeps the left source's partitions"
    );
}

#[test]
fn a_stream_stream_join_repartitions_only_the_side_that_needs_it() {
    let (_dir, log, mut session) = with_orders();
    run(
        &mut session,
        "CREATE STREAM shipments (sid STRING KEY, order_id STRING) WITH (kafka_topic='shipments', value_format='JSON', partitions=3);
         INSERT INTO shipments (ROWTIME, sid, order_id) VALUES (7, 's1', 'order7');
         INSERT INTO shipments (ROWTIME, sid, order_id) VALUES (8, 's2', 'order8');
         CREATE STREAM shipped AS SELECT o.id, o.amount, s.sid FROM orders o JOIN shipments s WITHIN 1 HOUR ON o.id = s.order_id;",
    );
    session.run_until_idle().unwrap();
    assert_eq!(
        repartition_topics(&log),
        ["_eddy-CSAS_SHIPPED_0-Join-right-repartition"]
    );
    let mut shipped: Vec<String> = log
        .topic("SHIPPED")
        .unwrap()
        .partitions()
        .iter()
        .flat_map(|p| p.read(0, eddy_log::ReadLimits::default()).unwrap())
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [r#"{"AMOUNT":7,"SID":"s1"}"#, r#"{"AMOUNT":8,"SID":"s2"}"#]
    );
    run(&mut session, "TERMINATE ALL;");
    assert!(repartition_topics(&log).is_empty());
}

#[test]
fn sides_with_different_partition_counts_join_only_through_a_repartition_topic() {
    let (_dir, log, mut session) = with_orders();
    run(
        &mut session,
        "CREATE TABLE regions (name STRING PRIMARY KEY, manager STRING) WITH (kafka_topic='regions', value_format='JSON', partitions=2);
         CREATE TABLE notes (id STRING PRIMARY KEY, note STRING) WITH (kafka_topic='notes', value_format='JSON', partitions=2);",
    );
    // Keyed by the join column on both sides: nothing to repartition, so the counts must match.
    let (stmt, text) = parse_statements(
        "CREATE STREAM noted AS SELECT o.id, o.amount, n.note FROM orders o JOIN notes n ON o.id = n.id;",
    )
    .unwrap()
    .remove(0);
    let err = session.execute(&stmt, &text).unwrap_err().to_string();
    assert_eq!(
        err,
        "Can't join `O` with `N` since the number of partitions don't match. `O` partitions = 3; `N` partitions = 2. Please repartition either one so that the number of partitions match."
    );
    // The stream side rekeyed: its repartition topic takes the table's count.
    run(
        &mut session,
        "CREATE STREAM enriched AS SELECT o.region, o.amount, r.manager FROM orders o JOIN regions r ON o.region = r.name;",
    );
    let topic = log
        .topic("_eddy-CSAS_ENRICHED_0-Join-left-repartition")
        .unwrap();
    assert_eq!(topic.partition_count(), 2);
}

/// Appends a change of the order `i` to its partition (the one its key chooses, as `orders`
/// placed it).
fn change_order(log: &Log, i: u32, value: Option<&str>) {
    let record = Record {
        key: Some(Bytes::from(format!("order{i}"))),
        value: value.map(|v| Bytes::from(v.to_string())),
        timestamp: 100,
        headers: Vec::new(),
    };
    let topic = log.topic("orders").unwrap();
    let p = topic.partition_for(record.key.as_deref());
    topic.partition(p).unwrap().append(&[record]).unwrap();
}

/// The values a topic holds, over all its partitions.
fn records(log: &Log, topic: &str) -> u64 {
    let topic = log.topic(topic).unwrap();
    topic.partitions().iter().map(|p| p.end_offset()).sum()
}

#[test]
fn a_table_aggregation_sends_retractions_and_additions_through_a_repartition_topic() {
    let (_dir, log, mut session) = with_orders();
    run(
        &mut session,
        "CREATE TABLE orders_t (id STRING PRIMARY KEY, region STRING, amount INT) WITH (kafka_topic='orders', value_format='JSON');
         CREATE TABLE totals AS SELECT region, SUM(amount) AS total FROM orders_t GROUP BY region;",
    );
    session.run_until_idle().unwrap();
    let sums =
        |r0: &str, r1: &str| vec![("r0".to_string(), r0.to_string()), ("r1".into(), r1.into())];
    // 0 + 2 + ... + 28 and 1 + 3 + ... + 29.
    assert_eq!(totals(&mut session), sums("210", "225"));
    assert!(
        log.topic(TOPIC).is_ok(),
        "ksqlDB always repartitions a table's GROUP BY"
    );
    // An order moving to the other region leaves its old group.
    change_order(&log, 0, Some(r#"{"REGION":"r1","AMOUNT":10}"#));
    session.run_until_idle().unwrap();
    assert_eq!(totals(&mut session), sums("210", "235"));
    // A change within a group is one retraction and one addition in one record: one result.
    let before = records(&log, "TOTALS");
    change_order(&log, 2, Some(r#"{"REGION":"r0","AMOUNT":5}"#));
    session.run_until_idle().unwrap();
    assert_eq!(totals(&mut session), sums("213", "235"));
    assert_eq!(records(&log, "TOTALS"), before + 1);
    // The regrouping stage remembers every order's row across a restart.
    drop(session);
    let mut session = Session::open(log.clone()).unwrap();
    change_order(&log, 1, None);
    change_order(&log, 3, Some(r#"{"REGION":"r0","AMOUNT":3}"#));
    session.run_until_idle().unwrap();
    assert_eq!(totals(&mut session), sums("216", "231"));
    run(&mut session, "TERMINATE ALL;");
    assert!(repartition_topics(&log).is_empty());
}

#[test]
fn an_aggregation_after_a_join_repartitions_the_joined_rows() {
    let (_dir, log, mut session) = with_regions("ann");
    run(
        &mut session,
        "CREATE TABLE totals AS SELECT r.manager, SUM(o.amount) AS total
           FROM orders o JOIN regions r ON o.region = r.name GROUP BY r.manager;",
    );
    session.run_until_idle().unwrap();
    // The join's stream side is rekeyed, then the joined rows by their group.
    assert_eq!(
        repartition_topics(&log),
        [
            "_eddy-CTAS_TOTALS_0-Aggregate-GroupBy-repartition",
            "_eddy-CTAS_TOTALS_0-Join-left-repartition"
        ]
    );
    assert_eq!(
        totals(&mut session),
        [("ann".to_string(), "435".to_string())]
    );
    let Outcome::Message(plan) = execute(&mut session, "EXPLAIN CTAS_TOTALS_0;") else {
        panic!("EXPLAIN describes the query")
    };
    assert_eq!(plan.matches("Sink: topic").count(), 3, "{plan}");
    // After a restart, new input is counted once, old input not again.
    drop(session);
    let mut session = Session::open(log.clone()).unwrap();
    common::produce(&log, "orders", &[r#"{"REGION":"r1","AMOUNT":100}"#]);
    session.run_until_idle().unwrap();
    assert_eq!(
        totals(&mut session),
        [("ann".to_string(), "535".to_string())]
    );
    run(&mut session, "TERMINATE ALL;");
    assert!(repartition_topics(&log).is_empty());
}
