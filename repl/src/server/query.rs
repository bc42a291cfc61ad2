//! Queries over HTTP: `POST /query` (ksqlDB's v1 shape: a JSON array of `header`, `row` and
//! `finalMessage` objects, streamed as rows arrive), `POST /query-stream` (the v2 shape: a
//! header object then one JSON array per row, as delimited lines or, with `Accept:
//! application/json`, one JSON array) and `POST /close-query`.
//!
//! A push query runs on a blocking task of its own, polling the engine and sending each batch
//! of rows down the response; it ends at its LIMIT, when the client goes away (the response
//! channel closes), or on `/close-query`. A pull query answers at once. PRINT streams text lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use datafusion::common::ScalarValue;
use eddy_sql::ast::Statement;
use eddy_sql::script::split;
use eddy_sql::{result_schema_text, Outcome, PushQuery, ResultColumn, TopicPrint};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::ksql::with_request_scope;
use super::{error_response, parse_body, statement_error, Reject, Shared};

/// How long a push query waits for input before checking whether it should end.
const POLL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryRequest {
    ksql: String,
    #[serde(default)]
    streams_properties: Map<String, Value>,
    #[serde(default)]
    session_variables: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryStreamRequest {
    sql: String,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    session_variables: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CloseRequest {
    query_id: String,
}

/// What a query statement started.
enum Started {
    Pull {
        schema: Vec<ResultColumn>,
        rows: Vec<Vec<ScalarValue>>,
        end: Option<&'static str>,
    },
    Push(Box<PushQuery>),
    Print(Box<TopicPrint>),
}

fn reject(status: StatusCode, code: u32, message: &str) -> Reject {
    Box::new(error_response(status, code, message))
}

/// Parses and starts the one query statement of a request.
async fn start(
    shared: Arc<Shared>,
    sql: String,
    properties: Map<String, Value>,
    variables: Map<String, Value>,
) -> Result<Started, Reject> {
    let run = move || {
        let mut session = shared.session();
        with_request_scope(&mut session, &properties, &variables, |session| {
            let pieces = split(&sql);
            let [piece] = pieces.as_slice() else {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    40000,
                    &format!("Expected exactly one statement, found {}.", pieces.len()),
                ));
            };
            let mut statements = session
                .parse_piece(piece)
                .map_err(|e| Box::new(statement_error(piece.text.trim(), &e, Vec::new())))?;
            let (stmt, text) = match statements.len() {
                1 => statements.remove(0),
                n => {
                    return Err(reject(
                        StatusCode::BAD_REQUEST,
                        40000,
                        &format!("Expected exactly one statement, found {n}."),
                    ))
                }
            };
            if !matches!(stmt, Statement::Query(_) | Statement::Print(_)) {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    40002,
                    "Only SELECT and PRINT statements can be issued to this endpoint; send other statements to /ksql.",
                ));
            }
            match session.execute(&stmt, &text) {
                Ok(Outcome::Rows { schema, rows, end }) => Ok(Started::Pull { schema, rows, end }),
                Ok(Outcome::Push(q)) => Ok(Started::Push(q)),
                Ok(Outcome::Print(p)) => Ok(Started::Print(p)),
                Ok(_) => Err(reject(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    50000,
                    "The query gave no rows.",
                )),
                Err(e) => Err(Box::new(statement_error(&text, &e, Vec::new()))),
            }
        })
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(started) => started,
        Err(e) => Err(reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            50000,
            &e.to_string(),
        )),
    }
}

/// A row's cells as JSON, ksqlDB's way (decimals and doubles printed as ksqlDB prints them).
fn cells_json(cells: &[ScalarValue]) -> String {
    let mut out = String::from("[");
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if eddy_engine::write_scalar_json(&mut out, c).is_err() {
            out.push_str("null");
        }
    }
    out.push(']');
    out
}

/// The chunks of one query's response, in one of the two shapes.
#[derive(Clone, Copy)]
enum Shape {
    /// `/query`: `[{"header":...}\n,{"row":...}\n...,{"finalMessage":...}]\n`: one JSON
    /// array, and one message per line (each line ends its message, so a client reading
    /// lines gets every row as soon as it is sent).
    V1,
    /// `/query-stream`, delimited: a header line, then a JSON array per line.
    Delimited,
    /// `/query-stream` with `Accept: application/json`: the same as one JSON array.
    JsonArray,
}

impl Shape {
    fn header(self, query_id: &str, schema: &[ResultColumn]) -> String {
        match self {
            Shape::V1 => format!(
                "[{}\n",
                json!({"header": {"queryId": query_id, "schema": result_schema_text(schema)}})
            ),
            Shape::Delimited | Shape::JsonArray => {
                let header = json!({
                    "queryId": query_id,
                    "columnNames": schema.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                    "columnTypes": schema.iter().map(|c| c.ty.to_string()).collect::<Vec<_>>(),
                });
                match self {
                    Shape::JsonArray => format!("[{header}\n"),
                    _ => format!("{header}\n"),
                }
            }
        }
    }

    fn row(self, cells: &[ScalarValue], tombstone: bool) -> String {
        match self {
            Shape::V1 if tombstone => format!(
                ",{{\"row\":{{\"columns\":{},\"tombstone\":true}}}}\n",
                cells_json(cells)
            ),
            Shape::V1 => format!(",{{\"row\":{{\"columns\":{}}}}}\n", cells_json(cells)),
            Shape::Delimited => format!("{}\n", cells_json(cells)),
            Shape::JsonArray => format!(",{}\n", cells_json(cells)),
        }
    }

    /// The end of the response, with ksqlDB's final message for `/query`.
    fn end(self, message: Option<&str>) -> String {
        match (self, message) {
            (Shape::V1, Some(m)) => format!(",{}]\n", json!({ "finalMessage": m })),
            (Shape::V1 | Shape::JsonArray, _) => "]\n".into(),
            (Shape::Delimited, _) => String::new(),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Shape::Delimited => "application/vnd.ksqlapi.delimited.v1",
            _ => "application/json",
        }
    }
}

type Chunks = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn streaming(shape: Shape, rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, shape.content_type())],
        Body::from_stream(stream),
    )
        .into_response()
}

fn send(tx: &Chunks, text: String) -> bool {
    tx.blocking_send(Ok(Bytes::from(text))).is_ok()
}

/// Runs a push query until its LIMIT, `/close-query`, or the client leaving.
fn stream_push(shared: Arc<Shared>, mut query: PushQuery, shape: Shape, tx: Chunks) {
    let id = query.id().to_string();
    let closed = Arc::new(AtomicBool::new(false));
    if let Ok(mut push) = shared.push.lock() {
        push.insert(id.clone(), closed.clone());
    }
    if send(&tx, shape.header(&id, query.schema())) {
        let end = loop {
            if closed.load(Ordering::Acquire) || shared.stopping.load(Ordering::Acquire) {
                break Some("Query Terminated");
            }
            if tx.is_closed() {
                break None;
            }
            match query.poll(POLL) {
                Ok(rows) => {
                    if !rows
                        .iter()
                        .all(|r| send(&tx, shape.row(&r.cells, r.tombstone)))
                    {
                        break None;
                    }
                }
                Err(e) => {
                    tracing::warn!(query = %id, "push query failed: {e}");
                    break Some("Query failed");
                }
            }
            if query.is_done() {
                break Some("Limit Reached");
            }
        };
        if let Some(message) = end {
            send(&tx, shape.end(Some(message)));
        }
    }
    if let Ok(mut push) = shared.push.lock() {
        push.remove(&id);
    }
}

fn stream_print(shared: Arc<Shared>, mut print: TopicPrint, tx: Chunks) {
    loop {
        if tx.is_closed() || shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match print.poll(POLL) {
            Ok(lines) => {
                if !lines.into_iter().all(|l| send(&tx, format!("{l}\n"))) {
                    return;
                }
            }
            Err(e) => {
                send(&tx, format!("error: {e}\n"));
                return;
            }
        }
        if print.is_done() {
            return;
        }
    }
}

fn respond(shared: Arc<Shared>, started: Started, shape: Shape) -> Response {
    match started {
        Started::Pull { schema, rows, end } => {
            let mut body = shape.header("pull", &schema);
            for r in &rows {
                body.push_str(&shape.row(r, false));
            }
            body.push_str(&shape.end(end));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, shape.content_type())],
                body,
            )
                .into_response()
        }
        Started::Push(query) => {
            let (tx, rx) = mpsc::channel(64);
            tokio::task::spawn_blocking(move || stream_push(shared, *query, shape, tx));
            streaming(shape, rx)
        }
        Started::Print(print) => {
            let (tx, rx) = mpsc::channel(64);
            tokio::task::spawn_blocking(move || stream_print(shared, *print, tx));
            let mut response = streaming(shape, rx);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain".parse().expect("a media type"),
            );
            response
        }
    }
}

pub(crate) async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: QueryRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match start(
        shared.clone(),
        request.ksql,
        request.streams_properties,
        request.session_variables,
    )
    .await
    {
        // A pull query's rows as protobuf, when asked for (push queries answer in JSON).
        Ok(Started::Pull { schema, rows, end }) if super::proto_rows::wanted(&headers) => {
            match super::proto_rows::body("pull", &schema, &rows, end) {
                Ok(body) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, super::proto_rows::MEDIA_TYPE)],
                    body,
                )
                    .into_response(),
                Err(e) => error_response(StatusCode::BAD_REQUEST, 40000, &e),
            }
        }
        Ok(started) => respond(shared, started, Shape::V1),
        Err(response) => *response,
    }
}

pub(crate) async fn query_stream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: QueryStreamRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let json_array = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let shape = if json_array {
        Shape::JsonArray
    } else {
        Shape::Delimited
    };
    match start(
        shared.clone(),
        request.sql,
        request.properties,
        request.session_variables,
    )
    .await
    {
        Ok(started) => respond(shared, started, shape),
        Err(response) => *response,
    }
}

pub(crate) async fn close_query(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: CloseRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let flag = shared
        .push
        .lock()
        .ok()
        .and_then(|p| p.get(&request.query_id).cloned());
    match flag {
        Some(flag) => {
            flag.store(true, Ordering::Release);
            StatusCode::OK.into_response()
        }
        None => error_response(
            StatusCode::BAD_REQUEST,
            40000,
            &format!("No query with id {}", request.query_id),
        ),
    }
}
