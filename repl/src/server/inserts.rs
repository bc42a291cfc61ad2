//! `POST /inserts-stream`: rows into a stream as they arrive, ksqlDB's way. The body is JSON
//! lines: first `{"target": "STREAM_NAME"}`, then one object of column values per row. Each row
//! is acknowledged on its own line of the response, once appended (`{"status":"ok","seq":n}`)
//! or refused (`{"status":"error","seq":n,...}`), while the body is still arriving.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::Shared;

type Acks = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn ack(tx: &Acks, value: Value) -> bool {
    tx.send(Ok(Bytes::from(format!("{value}\n")))).await.is_ok()
}

fn error(seq: u64, message: String) -> Value {
    json!({"status": "error", "seq": seq, "error_code": 40000, "message": message})
}

/// Handles one line of the body; `false` ends the request.
async fn line(
    shared: &Arc<Shared>,
    target: &mut Option<String>,
    seq: &mut u64,
    text: &[u8],
    tx: &Acks,
) -> bool {
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    if text.is_empty() {
        return true;
    }
    let parsed: Result<Map<String, Value>, _> = serde_json::from_str(text);
    let Some(name) = target.clone() else {
        let name = parsed
            .ok()
            .and_then(|m| m.get("target").and_then(Value::as_str).map(str::to_string));
        let Some(name) = name else {
            ack(
                tx,
                error(
                    0,
                    "The first line must be {\"target\": \"<stream>\"}.".into(),
                ),
            )
            .await;
            return false;
        };
        let known = {
            let session = shared.session();
            [name.clone(), name.to_ascii_uppercase()]
                .into_iter()
                .find(|n| session.catalog.source(n).is_some())
        };
        match known {
            Some(n) => *target = Some(n),
            None => {
                ack(
                    tx,
                    error(0, format!("Cannot insert into an unknown stream: {name}")),
                )
                .await;
                return false;
            }
        }
        return true;
    };
    let this = *seq;
    *seq += 1;
    let row = match parsed {
        Ok(row) => row,
        Err(e) => {
            return ack(
                tx,
                error(this, format!("Invalid JSON in inserts stream: {e}")),
            )
            .await
        }
    };
    let shared = shared.clone();
    let inserted =
        tokio::task::spawn_blocking(move || shared.session().insert_json(&name, &row)).await;
    let reply = match inserted {
        Ok(Ok(())) => json!({"status": "ok", "seq": this}),
        Ok(Err(e)) => error(this, e.to_string()),
        Err(e) => error(this, e.to_string()),
    };
    ack(tx, reply).await
}

pub(crate) async fn inserts_stream(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut target = None;
        let mut seq = 0;
        loop {
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let text: Vec<u8> = buffer.drain(..=end).collect();
                if !line(&shared, &mut target, &mut seq, &text, &tx).await {
                    return;
                }
            }
            match data.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(_)) => return,
                None => {
                    // The last line may lack its newline.
                    let rest = std::mem::take(&mut buffer);
                    line(&shared, &mut target, &mut seq, &rest, &tx).await;
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.ksqlapi.delimited.v1")],
        Body::from_stream(stream),
    )
        .into_response()
}
