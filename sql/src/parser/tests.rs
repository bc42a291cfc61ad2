use super::*;
use crate::types::SqlType;

#[test]
fn parses_a_create_stream_with_keys_and_properties() {
    let s = parse_statement(
        "CREATE STREAM test (K STRING KEY, id bigint, `Name` varchar, m MAP<STRING, ARRAY<INT>>, d DECIMAL(4, 2)) WITH (kafka_topic='test_topic', value_format='DELIMITED', partitions=2);",
    )
    .unwrap();
    let Statement::CreateSource(c) = s else {
        panic!("{s:?}")
    };
    assert_eq!(c.name, "TEST");
    assert_eq!(c.kind, SourceKind::Stream);
    let names: Vec<_> = c.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["K", "ID", "Name", "M", "D"]);
    assert_eq!(c.columns[0].role, ColumnRole::Key { primary: false });
    assert_eq!(
        c.columns[3].ty,
        SqlType::Map(
            Box::new(SqlType::String),
            Box::new(SqlType::Array(Box::new(SqlType::Int)))
        )
    );
    assert_eq!(
        c.properties.text("KAFKA_TOPIC").as_deref(),
        Some("test_topic")
    );
    assert_eq!(c.properties.text("PARTITIONS").as_deref(), Some("2"));
}

#[test]
fn parses_a_create_as_select_with_clauses() {
    let s = parse_statement(
        "CREATE TABLE S1 WITH (value_format='JSON') AS SELECT k, COUNT(*) AS c FROM test t WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) WHERE id > 100 GROUP BY k HAVING COUNT(*) > 1 EMIT CHANGES;",
    )
    .unwrap();
    let Statement::CreateAsSelect(c) = s else {
        panic!()
    };
    assert_eq!(
        c.query.from.source,
        Relation {
            name: "TEST".into(),
            alias: Some("T".into())
        }
    );
    assert_eq!(
        c.query.window,
        Some(WindowSpec::Tumbling {
            size_ms: 60_000,
            retention_ms: None,
            grace_ms: Some(10_000)
        })
    );
    assert!(c.query.where_clause.is_some() && c.query.having.is_some());
    assert_eq!(c.query.emit, Some(Emit::Changes));
    assert_eq!(c.query.group_by.len(), 1);
}

#[test]
fn parses_joins_with_within() {
    let s = parse_statement("SELECT * FROM a JOIN b WITHIN (1 SECOND, 2 HOURS) GRACE PERIOD 5 MINUTES ON a.id = b.id LEFT JOIN c ON a.x = c.x EMIT CHANGES LIMIT 3").unwrap();
    let Statement::Query(q) = s else { panic!() };
    assert_eq!(q.from.joins.len(), 2);
    assert_eq!(
        q.from.joins[0].within,
        Some(Within {
            before_ms: 1000,
            after_ms: 7_200_000,
            grace_ms: Some(300_000)
        })
    );
    assert_eq!(q.from.joins[1].kind, JoinKind::Left);
    assert_eq!(q.limit, Some(3));
}

#[test]
fn splits_scripts_and_keeps_statement_text() {
    let all = parse_statements("SET 'auto.offset.reset'='earliest';\n  DROP STREAM IF EXISTS s DELETE TOPIC;\nSHOW STREAMS").unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].1, "DROP STREAM IF EXISTS s DELETE TOPIC");
    assert_eq!(
        all[0].0,
        Statement::Set {
            name: "auto.offset.reset".into(),
            value: "earliest".into()
        }
    );
}

#[test]
fn errors_say_line_column_and_what_was_expected() {
    let e = parse_statement("CREATE STREAM s (a INT)\n  WITH (kafka_topic = );").unwrap_err();
    assert_eq!((e.line, e.column), (2, 23), "{e}");
    assert!(
        e.message.contains("expected a string, number or boolean"),
        "{e}"
    );
    let e = parse_statement("SELEKT 1").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
    let e = parse_statement("SELECT a FROM s WHERE").unwrap_err();
    assert!(e.to_string().starts_with("line 1:"), "{e}");
    let e = parse_statement("CREATE STREAM s (a ARRAY<ARRAY<INT>>, b INT) WITH (kafka_topic='t');")
        .map(|_| ());
    assert!(e.is_ok(), "nested >> closes two type arguments: {e:?}");
}

#[test]
fn a_nested_struct_closed_by_shift_right_ends_its_parent() {
    let t = parse_type("STRUCT<A STRUCT<B INT>>").unwrap();
    assert_eq!(
        t,
        SqlType::Struct(vec![(
            "A".into(),
            SqlType::Struct(vec![("B".into(), SqlType::Int)])
        )])
    );
    let cols = parse_schema("S STRUCT<A STRUCT<B INT>>, C DOUBLE").unwrap();
    assert_eq!(cols.len(), 2, "C is a column, not a field of S");
    assert!(parse_type("ARRAY<INT>>").is_err());
}
