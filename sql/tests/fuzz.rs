//! Fuzz target of the statement parser (see `eddy-fuzz`): any text gets statements or an error
//! with a line and column, never a panic.

#[test]
fn fuzz_statement_parser() {
    let seeds: Vec<Vec<u8>> = [
        "CREATE STREAM s (id STRING KEY, v INT, m MAP<STRING, ARRAY<STRUCT<a INT, b DECIMAL(4,2)>>>) WITH (kafka_topic='s', partitions=2, value_format='JSON');",
        "CREATE TABLE t AS SELECT k, COUNT(*) AS n, LATEST_BY_OFFSET(v) FROM s WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS, GRACE PERIOD 5 SECONDS) WHERE v > 3 AND x IS NOT NULL GROUP BY k HAVING COUNT(*) > 1 EMIT FINAL;",
        "SELECT a.id, b.x, CASE WHEN a.v BETWEEN 1 AND 5 THEN 'low' ELSE 'high' END FROM a LEFT JOIN b WITHIN (1 HOUR, 2 HOURS) GRACE PERIOD 1 MINUTE ON a.id = b.id PARTITION BY a.id EMIT CHANGES LIMIT 10;",
        "INSERT INTO s (id, v) VALUES ('x', -1.5e3); SET 'auto.offset.reset'='earliest'; PRINT 'topic' FROM BEGINNING INTERVAL 2 LIMIT 3;",
        "SELECT TRANSFORM(arr, x => x + 1), FILTER(m, (k, v) => v > 0), STRUCT(a := 1, `b c` := 'q'), arr[1], s->f FROM t WHERE ROWTIME >= '2020-01-01T00:00:00' AND k IN ('a', 'b');",
        "DESCRIBE EXTENDED s; SHOW QUERIES; EXPLAIN CTAS_T_0; TERMINATE ALL; DROP TABLE IF EXISTS t DELETE TOPIC; DEFINE x = 'y'; SELECT * FROM s WHERE v = ${x};",
        "-- a comment\nCREATE OR REPLACE STREAM \"quoted\" WITH (kafka_topic='q', value_format='AVRO') AS SELECT * FROM s /* inline */;",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    eddy_fuzz::run("sql_parser", seeds, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = eddy_sql::parse_statements(&text);
    });
}
