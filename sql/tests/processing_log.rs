//! A record that cannot be read, or whose expression fails, goes to the processing log with the
//! query, its offset and the reason; the query keeps running.

mod common;

use common::{produce, run, values};
use eddy_engine::PROCESSING_LOG_TOPIC;
use eddy_log::{Log, LogOptions};
use eddy_sql::Session;
use serde_json::Value;

#[test]
fn bad_records_are_logged_and_skipped_and_failing_columns_nulled() {
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
    run(
        &mut session,
        "CREATE STREAM s (n STRING, d INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
         CREATE STREAM out AS SELECT CAST(n AS INT) / d AS q FROM s;",
    );
    produce(
        &log,
        "s",
        &[
            "{\"n\": \"10\", \"d\": 2}",
            "{not json",
            "{\"n\": \"x\", \"d\": 1}",
            "{\"n\": \"9\", \"d\": 3}",
        ],
    );
    session.run_until_idle().unwrap();

    // The record that is not JSON is skipped; the one whose expression fails keeps its row,
    // with the failing column null, as in ksqlDB.
    assert_eq!(
        values(&log, "OUT"),
        [r#"{"Q":5}"#, r#"{"Q":null}"#, r#"{"Q":3}"#],
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
            .contains("Error computing expression for column Q"),
        "{entries:?}"
    );
}
