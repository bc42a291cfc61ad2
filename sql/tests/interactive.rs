//! What an interactive user runs besides persistent queries: push queries, PRINT, scripts with
//! variables and RUN SCRIPT, EXPLAIN, DESCRIBE EXTENDED, SHOW FUNCTIONS.

mod common;

use std::ops::ControlFlow;
use std::time::Duration;

use common::{produce, run};
use eddy_log::{Log, LogOptions};
use eddy_sql::{cell_text, parse_statements, Outcome, Session};

fn execute(session: &mut Session, sql: &str) -> Outcome {
    let (stmt, text) = parse_statements(sql).unwrap().remove(0);
    session
        .execute(&stmt, &text)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn message(session: &mut Session, sql: &str) -> String {
    match execute(session, sql) {
        Outcome::Message(m) => m,
        other => panic!("{sql}: expected a message, got {other:?}"),
    }
}

fn session() -> (tempfile::TempDir, Log, Session) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut session = Session::open(log.clone()).unwrap();
    run(
        &mut session,
        "CREATE STREAM orders (region STRING, amount INT) WITH (kafka_topic='orders', value_format='JSON', partitions=1);",
    );
    (dir, log, session)
}

#[test]
fn a_push_query_shows_rows_as_they_arrive_and_stops_at_its_limit() {
    let (_dir, log, mut session) = session();
    produce(&log, "orders", &[r#"{"REGION":"eu","AMOUNT":5}"#]);
    // From the end by default: the record already there is not shown.
    let Outcome::Push(mut latest) = execute(
        &mut session,
        "SELECT region, amount * 2 AS twice FROM orders EMIT CHANGES LIMIT 1;",
    ) else {
        panic!("not a push query")
    };
    assert_eq!(
        eddy_sql::result_schema_text(latest.schema()),
        "`REGION` STRING, `TWICE` INTEGER"
    );
    assert!(latest.poll(Duration::from_millis(10)).unwrap().is_empty());
    produce(
        &log,
        "orders",
        &[
            r#"{"REGION":"us","AMOUNT":7}"#,
            r#"{"REGION":"eu","AMOUNT":1}"#,
        ],
    );
    let rows = latest.poll(Duration::from_millis(10)).unwrap();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.cells.iter().map(cell_text).collect())
        .collect();
    assert_eq!(cells, [["us", "14"]]);
    assert!(latest.is_done());

    // From the start, an aggregate in memory: every update is a row.
    run(&mut session, "SET 'auto.offset.reset'='earliest';");
    let Outcome::Push(mut counts) = execute(
        &mut session,
        "SELECT region, COUNT(*) AS n FROM orders GROUP BY region EMIT CHANGES;",
    ) else {
        panic!("not a push query")
    };
    let mut seen = Vec::new();
    for _ in 0..10 {
        for row in counts.poll(Duration::from_millis(10)).unwrap() {
            seen.push(row.cells.iter().map(cell_text).collect::<Vec<_>>());
        }
    }
    assert_eq!(seen, [["eu", "1"], ["us", "1"], ["eu", "2"]]);
    assert!(!counts.is_done());
    drop(counts);
    // A push query leaves nothing behind: no committed positions, no state, no topics.
    let topics: Vec<String> = log.topics().iter().map(|t| t.name().to_string()).collect();
    assert!(
        topics.iter().all(|t| !t.contains("transient")),
        "{topics:?}"
    );
    for id in ["transient_ORDERS_1", "transient_ORDERS_2"] {
        let tp = eddy_log::TopicPartition::new("orders", 0);
        assert_eq!(log.committed_offset(id, &tp), None, "{id}");
    }
    assert!(!session.log().dir().join("state").exists());
}

#[test]
fn print_shows_records_with_their_detected_formats() {
    let (_dir, log, mut session) = session();
    produce(
        &log,
        "orders",
        &[
            r#"{"REGION":"eu","AMOUNT":5}"#,
            "plain text",
            r#"{"REGION":"us"}"#,
        ],
    );
    let Outcome::Print(mut print) =
        execute(&mut session, "PRINT orders FROM BEGINNING INTERVAL 2;")
    else {
        panic!("not a PRINT")
    };
    let lines = print.poll(Duration::from_millis(10)).unwrap();
    assert_eq!(lines[0], "Key format: ¯\\_(ツ)_/¯ - no data processed");
    assert_eq!(lines[1], "Value format: JSON or KAFKA_STRING");
    assert_eq!(lines.len(), 4, "every other record: {lines:?}");
    assert!(lines[2].ends_with(r#"key: <null>, value: {"REGION":"eu","AMOUNT":5}, partition: 0"#));
    assert!(lines[3].contains(r#"value: {"REGION":"us"}"#));
    let unknown = parse_statements("PRINT nothing;").unwrap().remove(0);
    let e = session.execute(&unknown.0, &unknown.1).unwrap_err();
    assert!(
        e.to_string().contains("Could not find topic 'nothing'"),
        "{e}"
    );
}

#[test]
fn scripts_substitute_variables_and_run_other_scripts() {
    let (dir, _log, mut session) = session();
    let file = dir.path().join("more.sql");
    std::fs::write(
        &file,
        "CREATE STREAM ${name}_big AS SELECT * FROM orders WHERE amount > ${min};\n",
    )
    .unwrap();
    let script = format!(
        "DEFINE name = 'orders';\nDEFINE MIN = '10';\nRUN SCRIPT '{}';\nSHOW VARIABLES;\nUNDEFINE min;\nSELEKT ${{min}};\nSHOW STREAMS;",
        file.display()
    );
    let mut outcomes = Vec::new();
    let _ = session.run_script(&script, &mut |text, outcome| {
        outcomes.push((text.to_string(), outcome.map_err(|e| e.to_string())));
        match &outcomes.last().unwrap().1 {
            Ok(_) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    let texts: Vec<&str> = outcomes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "DEFINE name = 'orders'",
            "DEFINE MIN = '10'",
            "CREATE STREAM orders_big AS SELECT * FROM orders WHERE amount > 10",
            "SHOW VARIABLES",
            "UNDEFINE min",
            "SELEKT ${min};"
        ]
    );
    let Ok(Outcome::Table { rows, .. }) = &outcomes[3].1 else {
        panic!("{:?}", outcomes[3])
    };
    assert_eq!(
        rows,
        &[
            vec!["min".to_string(), "10".into()],
            vec!["name".into(), "orders".into()]
        ]
    );
    // The error is placed in the whole script, and the script stopped there.
    let Err(e) = &outcomes[5].1 else { panic!() };
    assert!(e.starts_with("line 6:1:"), "{e}");
    assert!(session.catalog.source("ORDERS_BIG").is_some());
}

#[test]
fn explain_and_describe_extended_show_the_query_and_its_plan() {
    let (_dir, log, mut session) = session();
    run(
        &mut session,
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE totals AS SELECT region, SUM(amount) AS total FROM orders GROUP BY region;",
    );
    produce(
        &log,
        "orders",
        &[r#"{"REGION":"eu","AMOUNT":5}"#, "not json"],
    );
    session.run_until_idle().unwrap();
    let plan = message(&mut session, "EXPLAIN CTAS_TOTALS_0;");
    for part in [
        "ID                   : CTAS_TOTALS_0",
        "Status               : RUNNING",
        "Records in           : 2",
        "Processing-log errors: 1",
        "  Source: topic orders (KAFKA key, JSON value)",
        "  -> Aggregate: group by 1 columns, Sum(#1)",
        "  -> Sink: topic TOTALS (KAFKA key, JSON value)",
    ] {
        assert!(plan.contains(part), "{part} not in:\n{plan}");
    }
    let plan = message(
        &mut session,
        "EXPLAIN SELECT region FROM orders WHERE amount > 3 EMIT CHANGES;",
    );
    assert!(plan.contains("Query Type           : PUSH"), "{plan}");
    assert!(plan.contains("-> Filter: AMOUNT@"), "{plan}");
    assert_eq!(session.queries().count(), 1, "EXPLAIN starts nothing");

    produce(&log, "orders", &[r#"{"REGION":"us","AMOUNT":1}"#]);
    let Outcome::Table { columns, rows } = execute(&mut session, "SHOW QUERIES;") else {
        panic!()
    };
    assert_eq!(columns.last().unwrap(), "Lag (per partition)");
    assert_eq!(
        rows[0].last().unwrap(),
        "1 (0: 1)",
        "one record not yet read"
    );
    let probe = session.lag_probe().of_query("CTAS_TOTALS_0");
    assert_eq!(probe.total(), 1);
    assert_eq!(session.lag_probe().of_query("NO_SUCH_QUERY").total(), 0);
    session.run_until_idle().unwrap();
    assert_eq!(probe.total(), 0, "a probe reads the lag anew");

    let described = message(&mut session, "DESCRIBE EXTENDED orders;");
    for part in [
        "Type                 : STREAM",
        "Kafka topic          : orders (partitions: 1)",
        " AMOUNT | INTEGER",
        "CTAS_TOTALS_0 (RUNNING) : CREATE TABLE totals",
        "lag per partition: 0 (0: 0)",
        "messages: 3",
        "processing-log errors: 1",
    ] {
        assert!(described.contains(part), "{part} not in:\n{described}");
    }
}

#[test]
fn functions_are_listed_and_described() {
    let (_dir, _log, mut session) = session();
    let Outcome::Table { rows, .. } = execute(&mut session, "SHOW FUNCTIONS;") else {
        panic!()
    };
    assert!(rows.contains(&vec!["TOPK".to_string(), "AGGREGATE".into()]));
    assert!(rows.iter().any(|r| r[0] == "ABS"));
    assert!(rows.iter().all(|r| !r[0].starts_with("KSQL_")));
    let abs = message(&mut session, "DESCRIBE FUNCTION abs;");
    assert!(abs.contains("Type        : SCALAR"), "{abs}");
    assert!(abs.contains("absolute value"), "{abs}");
    let count = message(&mut session, "DESCRIBE FUNCTION count;");
    assert!(count.contains("Type        : AGGREGATE"), "{count}");
    assert!(rows.contains(&vec!["CUBE_EXPLODE".to_string(), "TABLE".into()]));
    let explode = message(&mut session, "DESCRIBE FUNCTION explode;");
    assert!(explode.contains("Type        : TABLE"), "{explode}");
}
