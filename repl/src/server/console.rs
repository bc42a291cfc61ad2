//! The web console at `/`: a page for people, on the same server as the REST API.
//!
//! The page (`console/`: HTML, CSS and JavaScript, no framework, charts drawn as SVG by hand) is
//! built into the binary, so the console works offline and ships with every `eddy server`. It
//! uses the REST API a ksqlDB client uses (`/ksql`, `/query-stream`, `/close-query`) plus one
//! endpoint of its own, `GET /console/api/state`: everything the page polls, in one answer.
//!
//! The static files are served without the auth token (they hold no data); the page sends the
//! token, taken from the address's `#token=` fragment or asked for, on every API call.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use eddy_engine::PROCESSING_LOG_TOPIC;
use eddy_log::ReadLimits;
use eddy_sql::ast::SourceKind;
use eddy_sql::{is_internal_topic, Session};
use serde_json::{json, Value};

use super::{error_response, json_response, Shared};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The latest processing-log entries the state carries.
const PROCESSING_LOG_ENTRIES: u64 = 50;

/// The paths served without the auth token.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/console/console.js" | "/console/console.css")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /console/api/state`: sources, topics, queries with their metrics and plans, and the
/// latest processing-log entries.
pub(crate) async fn state(State(shared): State<Arc<Shared>>) -> Response {
    match tokio::task::spawn_blocking(move || snapshot(&shared.session())).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, 50000, &e.to_string()),
    }
}

fn messages(session: &Session, topic: &str) -> u64 {
    session.log().topic(topic).map_or(0, |t| t.message_count())
}

fn snapshot(session: &Session) -> Value {
    let sources: Vec<Value> = session
        .catalog
        .sources
        .values()
        .map(|s| {
            let columns: Vec<Value> = s
                .key_columns
                .iter()
                .map(|c| (c, true))
                .chain(s.value_columns.iter().map(|c| (c, false)))
                .map(|(c, key)| json!({"name": c.name, "type": c.ty.to_string(), "key": key}))
                .collect();
            json!({
                "name": s.name,
                "kind": if s.kind == SourceKind::Stream { "STREAM" } else { "TABLE" },
                "topic": s.topic,
                "keyFormat": s.key_format.name(),
                "valueFormat": s.value_format.name(),
                "columns": columns,
                "messages": messages(session, &s.topic),
            })
        })
        .collect();
    let topics: Vec<Value> = session
        .log()
        .topics()
        .iter()
        .filter(|t| !is_internal_topic(t.name()))
        .map(|t| {
            json!({
                "name": t.name(),
                "partitions": t.partition_count(),
                "messages": t.message_count(),
            })
        })
        .collect();
    let lag = session.lag();
    let queries: Vec<Value> = session
        .query_infos()
        .into_iter()
        .map(|q| {
            let lag: Vec<Value> = lag
                .iter()
                .filter(|(id, ..)| *id == q.id)
                .map(|(_, topic, p, lag)| json!({"topic": topic, "partition": p, "lag": lag}))
                .collect();
            let m = &q.metrics;
            json!({
                "id": q.id,
                "sql": q.sql,
                "status": q.status,
                "sink": q.sink,
                "sources": q.sources,
                "tasks": q.tasks.iter().map(|t| json!({
                    "id": t.id,
                    "thread": t.thread,
                    "recordsIn": t.records_in,
                    "recordsOut": t.records_out,
                    "lag": t.lag,
                    "error": t.error,
                })).collect::<Vec<_>>(),
                "recordsIn": m.records_in.total(),
                "recordsOut": m.records_out.total(),
                "recordsInPerSecond": m.records_in.per_second(),
                "recordsOutPerSecond": m.records_out.per_second(),
                "lag": lag,
                "plan": q.plan,
            })
        })
        .collect();
    json!({
        "server": {"version": env!("CARGO_PKG_VERSION")},
        "sources": sources,
        "topics": topics,
        "queries": queries,
        "processingLog": processing_log(session),
    })
}

/// The latest entries of the processing log, oldest first; entries that are not the JSON the
/// engine writes are shown as their text.
fn processing_log(session: &Session) -> Vec<Value> {
    let Ok(partition) = session
        .log()
        .topic(PROCESSING_LOG_TOPIC)
        .and_then(|t| t.partition(0).cloned())
    else {
        return Vec::new();
    };
    let from = partition
        .end_offset()
        .saturating_sub(PROCESSING_LOG_ENTRIES)
        .max(partition.start_offset());
    let limits = ReadLimits {
        max_records: PROCESSING_LOG_ENTRIES as usize,
        ..ReadLimits::default()
    };
    let Ok(records) = partition.read(from, limits) else {
        return Vec::new();
    };
    records
        .into_iter()
        .map(|r| {
            let value = r.record.value.unwrap_or_default();
            let mut entry = serde_json::from_slice::<Value>(&value)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({"message": String::from_utf8_lossy(&value)}));
            entry["timestamp"] = r.record.timestamp.into();
            entry
        })
        .collect()
}
