#![allow(dead_code)]

use bytes::Bytes;
use eddy_log::{Log, ReadLimits, Record};
use eddy_sql::{parse_statements, Session};

/// Executes a script, failing the test on the first error.
pub fn run(session: &mut Session, sql: &str) {
    for (stmt, text) in parse_statements(sql).unwrap() {
        session
            .execute(&stmt, &text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

/// Appends values (no key, timestamp 1) to partition 0 of `topic`.
pub fn produce(log: &Log, topic: &str, values: &[&str]) {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            timestamp: 1,
            headers: Vec::new(),
        })
        .collect();
    log.partition(topic, 0).unwrap().append(&records).unwrap();
}

/// The values of partition 0 of `topic`, as text.
pub fn values(log: &Log, topic: &str) -> Vec<String> {
    log.partition(topic, 0)
        .unwrap()
        .read(0, ReadLimits::default())
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect()
}
