//! A record that cannot be read, or whose expression fails, goes to the processing log with the
//! query, its offset and the reason; the query keeps running.

use bytes::Bytes;
use eddy_engine::PROCESSING_LOG_TOPIC;
use eddy_log::{Log, LogOptions, ReadLimits, Record};
use eddy_sql::{parse_statements, Session};
use serde_json::Value;

fn values(log: &Log, topic: &str) -> Vec<String> {
    log.partition(topic, 0)
        .unwrap()
        .read(0, ReadLimits::default())
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn bad_records_are_logged_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogOptions {
            background: false,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let mut session = Session::new(log.clone());
    session
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    let script = "CREATE STREAM s (n STRING, d INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
                  CREATE STREAM out AS SELECT CAST(n AS INT) / d AS q FROM s;";
    for (stmt, text) in parse_statements(script).unwrap() {
        session.execute(&stmt, &text).unwrap();
    }
    let input = [
        "{\"n\": \"10\", \"d\": 2}",
        "{not json",
        "{\"n\": \"x\", \"d\": 1}",
        "{\"n\": \"9\", \"d\": 3}",
    ];
    let records: Vec<Record> = input
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            timestamp: 1,
            headers: Vec::new(),
        })
        .collect();
    log.partition("s", 0).unwrap().append(&records).unwrap();
    session.run_until_idle().unwrap();

    assert_eq!(
        values(&log, "OUT"),
        [r#"{"Q":5}"#, r#"{"Q":3}"#],
        "good records before and after the bad ones"
    );
    let entries: Vec<Value> = values(&log, PROCESSING_LOG_TOPIC)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["query"], "CSAS_OUT_0");
    assert_eq!(entries[0]["offset"], 1);
    assert!(
        entries[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{entries:?}"
    );
    assert_eq!(entries[1]["offset"], 2);
    assert!(
        entries[1]["message"]
            .as_str()
            .unwrap()
            .contains("error evaluating"),
        "{entries:?}"
    );
}
