//! `POST /ksql`: statements that are not queries, each answered by one of ksqlDB's entities
//! (`currentStatus` for what changes the catalog, `streams`, `tables`, `queries`,
//! `sourceDescription`, ...), in one JSON array.
//!
//! The request's `streamsProperties` (and `SET` statements in it) apply to that request only,
//! as each request is its own scope in ksqlDB; a persistent query keeps the properties it was
//! started with (they are recorded with it in the command topic). A statement that fails ends
//! the request with a `statement_error` holding the entities of the statements before it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use eddy_sql::ast::{ShowKind, SourceKind, Statement};
use eddy_sql::script::split;
use eddy_sql::{Outcome, Session};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{error_response, json_response, parse_body, statement_error, Shared};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KsqlRequest {
    pub ksql: String,
    #[serde(default)]
    pub streams_properties: Map<String, Value>,
    #[serde(default)]
    pub session_variables: Map<String, Value>,
}

pub(crate) async fn ksql(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: KsqlRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match tokio::task::spawn_blocking(move || execute(&shared, request)).await {
        Ok(response) => response,
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, 50000, &e.to_string()),
    }
}

/// A property value as `SET` would give it.
pub(crate) fn property_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `f` with the request's properties and variables added to the session's, then puts
/// the session's own back.
pub(crate) fn with_request_scope<T>(
    session: &mut Session,
    properties: &Map<String, Value>,
    variables: &Map<String, Value>,
    f: impl FnOnce(&mut Session) -> T,
) -> T {
    let (saved_properties, saved_variables) =
        (session.properties.clone(), session.variables.clone());
    for (k, v) in properties {
        session.properties.insert(k.clone(), property_text(v));
    }
    for (k, v) in variables {
        session
            .variables
            .insert(k.to_ascii_lowercase(), property_text(v));
    }
    let result = f(session);
    session.properties = saved_properties;
    session.variables = saved_variables;
    result
}

/// Statements a headless server still answers: they change nothing.
fn reads_only(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Show(_)
            | Statement::Describe { .. }
            | Statement::DescribeFunction(_)
            | Statement::Explain(_)
            | Statement::ExplainQuery(_)
    )
}

fn execute(shared: &Shared, request: KsqlRequest) -> Response {
    let mut session = shared.session();
    with_request_scope(
        &mut session,
        &request.streams_properties,
        &request.session_variables,
        |session| {
            let mut entities = Vec::new();
            for piece in split(&request.ksql) {
                let statements = match session.parse_piece(&piece) {
                    Ok(s) => s,
                    Err(e) => return statement_error(piece.text.trim(), &e, entities),
                };
                for (stmt, text) in statements {
                    if matches!(stmt, Statement::Query(_) | Statement::Print(_)) {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            40002,
                            "The following statement types should be issued to the websocket endpoint '/query':\n\t* PRINT\n\t* SELECT",
                        );
                    }
                    if shared.headless && !reads_only(&stmt) {
                        return error_response(
                            StatusCode::FORBIDDEN,
                            40300,
                            "The server is running in headless mode (--queries-file): interactive use is disabled; only SHOW, LIST, DESCRIBE and EXPLAIN are allowed.",
                        );
                    }
                    match session.execute(&stmt, &text) {
                        // ksqlDB answers an INSERT ... VALUES with no entity.
                        Ok(_) if matches!(stmt, Statement::InsertValues { .. }) => {}
                        Ok(outcome) => {
                            entities.push(entity(shared, session, &stmt, &text, outcome))
                        }
                        Err(e) => return statement_error(&text, &e, entities),
                    }
                }
            }
            json_response(StatusCode::OK, &Value::Array(entities))
        },
    )
}

/// ksqlDB's command id for a statement that changes the catalog.
fn command_id(stmt: &Statement, seq: u64) -> String {
    let kind = |k: SourceKind| match k {
        SourceKind::Stream => "stream",
        SourceKind::Table => "table",
    };
    match stmt {
        Statement::CreateSource(c) => format!("{}/`{}`/create", kind(c.kind), c.name),
        Statement::CreateAsSelect(c) => format!("{}/`{}`/create", kind(c.kind), c.name),
        Statement::Drop { kind: k, name, .. } => format!("{}/`{}`/drop", kind(*k), name),
        Statement::Terminate(Some(id)) => format!("terminate/{id}/execute"),
        Statement::Terminate(None) => "terminate/ALL/execute".into(),
        Statement::Pause(id) => format!("pause/{}/execute", id.as_deref().unwrap_or("ALL")),
        Statement::Resume(id) => format!("resume/{}/execute", id.as_deref().unwrap_or("ALL")),
        Statement::InsertInto { target, .. } => format!("stream/`{target}`/insert"),
        _ => format!("command/{seq}/execute"),
    }
}

/// The top-level type name ksqlDB gives a field's schema: `ARRAY` for `ARRAY<STRING>`.
fn type_word(ty: &str) -> &str {
    ty.split(['<', '(']).next().unwrap_or(ty)
}

fn entity(
    shared: &Shared,
    session: &Session,
    stmt: &Statement,
    text: &str,
    outcome: Outcome,
) -> Value {
    let header = |kind: &str| json!({"@type": kind, "statementText": text, "warnings": []});
    let with = |mut base: Value, key: &str, value: Value| {
        base[key] = value;
        base
    };
    match stmt {
        Statement::Show(ShowKind::Streams { .. }) | Statement::Show(ShowKind::Tables { .. }) => {
            let (kind, word, key) = match stmt {
                Statement::Show(ShowKind::Streams { .. }) => {
                    (SourceKind::Stream, "STREAM", "streams")
                }
                _ => (SourceKind::Table, "TABLE", "tables"),
            };
            let sources: Vec<Value> = session
                .catalog
                .sources
                .values()
                .filter(|s| s.kind == kind)
                .map(|s| {
                    json!({
                        "type": word,
                        "name": s.name,
                        "topic": s.topic,
                        "keyFormat": s.key_format.name(),
                        "valueFormat": s.value_format.name(),
                        "isWindowed": s.window.is_some(),
                    })
                })
                .collect();
            with(header(key), key, Value::Array(sources))
        }
        Statement::Show(ShowKind::Topics { .. }) => {
            let topics: Vec<Value> = session
                .log()
                .topics()
                .iter()
                .filter(|t| !eddy_sql::is_internal_topic(t.name()))
                .map(|t| json!({"name": t.name(), "replicaInfo": vec![1; t.partition_count() as usize]}))
                .collect();
            with(header("kafka_topics"), "topics", Value::Array(topics))
        }
        Statement::Show(ShowKind::Queries { .. }) => {
            let queries: Vec<Value> = session
                .query_infos()
                .into_iter()
                .map(|q| {
                    let topic = session
                        .catalog
                        .source(&q.sink)
                        .map_or(q.sink.clone(), |s| s.topic.clone());
                    json!({
                        "queryString": q.sql,
                        "sinks": [q.sink],
                        "sinkKafkaTopics": [topic],
                        "id": q.id,
                        "statusCount": {q.status.clone(): 1},
                        "queryType": "PERSISTENT",
                        "state": q.status,
                    })
                })
                .collect();
            with(header("queries"), "queries", Value::Array(queries))
        }
        Statement::Show(ShowKind::Properties) => {
            let properties: Vec<Value> = session
                .properties
                .iter()
                .map(|(k, v)| json!({"name": k, "scope": "KSQL", "value": v}))
                .collect();
            with(header("properties"), "properties", Value::Array(properties))
        }
        Statement::Show(ShowKind::Variables) => {
            let variables: Vec<Value> = session
                .variables
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            with(header("variables"), "variables", Value::Array(variables))
        }
        Statement::Describe {
            name,
            extended: false,
        } => match session.catalog.source(name) {
            Some(def) => {
                let mut fields: Vec<Value> = def
                    .key_columns
                    .iter()
                    .map(|c| {
                        let ty = c.ty.to_string();
                        json!({"name": c.name, "schema": {"type": type_word(&ty)}, "type": "KEY"})
                    })
                    .collect();
                fields.extend(def.value_columns.iter().map(|c| {
                    let ty = c.ty.to_string();
                    json!({"name": c.name, "schema": {"type": type_word(&ty)}})
                }));
                let infos = session.query_infos();
                let ids = |pick: &dyn Fn(&eddy_sql::QueryInfo) -> bool| -> Vec<Value> {
                    infos
                        .iter()
                        .filter(|q| pick(q))
                        .map(|q| json!({"queryString": q.sql, "sinks": [q.sink], "id": q.id, "state": q.status}))
                        .collect()
                };
                let partitions = session
                    .log()
                    .topic(&def.topic)
                    .map_or(0, |t| t.partition_count());
                let description = json!({
                    "name": def.name,
                    "windowType": def.window.map(|w| format!("{:?}", w.kind).to_ascii_uppercase()),
                    "readQueries": ids(&|q| q.sources.contains(&def.name)),
                    "writeQueries": ids(&|q| q.sink == def.name),
                    "fields": fields,
                    "type": if def.kind == SourceKind::Stream { "STREAM" } else { "TABLE" },
                    "timestamp": def.timestamp_column.clone().unwrap_or_default(),
                    "keyFormat": def.key_format.name(),
                    "valueFormat": def.value_format.name(),
                    "topic": def.topic,
                    "partitions": partitions,
                    "replication": 1,
                    "statement": def.sql,
                    "extended": false,
                });
                with(
                    header("sourceDescription"),
                    "sourceDescription",
                    description,
                )
            }
            None => outcome_entity(shared, stmt, text, outcome),
        },
        _ => outcome_entity(shared, stmt, text, outcome),
    }
}

/// The entity of any other outcome: a `currentStatus` for a statement that changes the
/// catalog or the session, text or rows otherwise.
fn outcome_entity(shared: &Shared, stmt: &Statement, text: &str, outcome: Outcome) -> Value {
    let changes = !reads_only(stmt);
    let (message, query_id) = match outcome {
        Outcome::Message(m) => (Value::from(m), Value::Null),
        Outcome::QueryStarted { id, message } => (Value::from(message), Value::from(id)),
        Outcome::Table { columns, rows } => {
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|r| {
                    Value::Object(
                        columns
                            .iter()
                            .cloned()
                            .zip(r.into_iter().map(Value::from))
                            .collect(),
                    )
                })
                .collect();
            let kind = match stmt {
                Statement::Show(ShowKind::Functions) => "function_names",
                Statement::Show(ShowKind::Types) => "type_list",
                _ => "rows",
            };
            return json!({"@type": kind, "statementText": text, "rows": rows, "warnings": []});
        }
        // Queries never reach here (they belong to /query).
        Outcome::Rows { .. } | Outcome::Push(_) | Outcome::Print(_) => (Value::Null, Value::Null),
    };
    if !changes {
        let kind = match stmt {
            Statement::Explain(_) | Statement::ExplainQuery(_) => "queryDescription",
            Statement::DescribeFunction(_) => "describe_function",
            _ => "sourceDescription",
        };
        return json!({"@type": kind, "statementText": text, "text": message, "warnings": []});
    }
    let seq = shared.command_seq.fetch_add(1, Ordering::AcqRel) + 1;
    let id = command_id(stmt, seq);
    if let Ok(mut statuses) = shared.statuses.lock() {
        statuses.insert(
            id.clone(),
            (
                "SUCCESS".into(),
                message.as_str().unwrap_or_default().to_string(),
            ),
        );
    }
    json!({
        "@type": "currentStatus",
        "statementText": text,
        "commandId": id,
        "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
        "commandSequenceNumber": seq,
        "warnings": [],
    })
}
