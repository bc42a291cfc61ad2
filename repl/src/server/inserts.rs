//! `POST /inserts-stream`: rows into a stream as they arrive, ksqlDB's way. The body is JSON
//! lines: first `{"target": "STREAM_NAME"}`, then one object of column values per row. Each row
//! is acknowledged on its own line of the response, once appended (`{"status":"ok","seq":n}`)
//! or refused (`{"status":"error","seq":n,...}`), while the body is still arriving.
//!
//! Rows are appended as they arrive, without waiting for each to be acknowledged; their
//! acknowledgements go out in order, each once the group commit that covers its row is done,
//! so the rows of one request share fsyncs instead of waiting for one each.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::Shared;

/// An acknowledgement to send, once its row (if any) is durable.
enum Ack {
    Now(Value),
    Durable {
        partition: Arc<eddy_log::Partition>,
        next: u64,
        reply: Value,
    },
}

type Acks = mpsc::Sender<Ack>;

async fn ack(tx: &Acks, value: Value) -> bool {
    tx.send(Ack::Now(value)).await.is_ok()
}

/// Sends acknowledgements in order, each once what it acknowledges is durable.
async fn send_acks(
    mut acks: mpsc::Receiver<Ack>,
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    while let Some(a) = acks.recv().await {
        let reply = match a {
            Ack::Now(reply) => reply,
            Ack::Durable {
                partition,
                next,
                reply,
            } => match partition.wait_durable(next).await {
                Ok(()) => reply,
                Err(e) => error(reply["seq"].as_u64().unwrap_or_default(), e.to_string()),
            },
        };
        if out
            .send(Ok(Bytes::from(format!("{reply}\n"))))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn error(seq: u64, message: String) -> Value {
    json!({"status": "error", "seq": seq, "error_code": 40000, "message": message})
}

/// Rows of a request read but not yet appended: their sequence numbers and parsed objects.
type Batch = Vec<(u64, Result<Map<String, Value>, String>)>;

/// The most rows appended at once: a request's rows that have arrived together go into one
/// append, so that readers (push queries above all) wake once for them, not once per row.
const BATCH_ROWS: usize = 500;

/// Handles one line of the body: the first names the target, the others are rows, added to
/// `batch`. `false` ends the request.
async fn line(
    shared: &Arc<Shared>,
    target: &mut Option<String>,
    seq: &mut u64,
    text: &[u8],
    tx: &Acks,
    batch: &mut Batch,
) -> bool {
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    if text.is_empty() {
        return true;
    }
    let parsed: Result<Map<String, Value>, _> = serde_json::from_str(text);
    if target.is_some() {
        let this = *seq;
        *seq += 1;
        batch.push((
            this,
            parsed.map_err(|e| format!("Invalid JSON in inserts stream: {e}")),
        ));
        return true;
    }
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
        Some(n) => {
            *target = Some(n);
            true
        }
        None => {
            ack(
                tx,
                error(0, format!("Cannot insert into an unknown stream: {name}")),
            )
            .await;
            false
        }
    }
}

/// Appends the rows of `batch` (in one append per partition) and queues their
/// acknowledgements in order. `false` if the client is gone.
async fn flush(
    shared: &Arc<Shared>,
    target: &Option<String>,
    batch: &mut Batch,
    tx: &Acks,
) -> bool {
    let (Some(name), false) = (target.clone(), batch.is_empty()) else {
        return true;
    };
    let rows = std::mem::take(batch);
    let seqs: Vec<u64> = rows.iter().map(|(seq, _)| *seq).collect();
    let shared = shared.clone();
    let inserted = tokio::task::spawn_blocking(move || {
        let valid: Vec<&Map<String, Value>> =
            rows.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        let mut appended = shared.session().insert_json_rows(&name, &valid).into_iter();
        rows.iter()
            .map(|(_, row)| match row {
                Ok(_) => appended
                    .next()
                    .expect("one result per row")
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match inserted {
        Ok(results) => results,
        Err(e) => seqs.iter().map(|_| Err(e.to_string())).collect(),
    };
    for (this, result) in seqs.into_iter().zip(results) {
        let pending = match result {
            Ok((partition, next)) => Ack::Durable {
                partition,
                next,
                reply: json!({"status": "ok", "seq": this}),
            },
            Err(e) => Ack::Now(error(this, e)),
        };
        if tx.send(pending).await.is_err() {
            return false;
        }
    }
    true
}

pub(crate) async fn inserts_stream(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let (out, rx) = mpsc::channel(64);
    // Rows in flight: appended, their acknowledgements waiting for a group commit.
    let (tx, acks) = mpsc::channel(1024);
    tokio::spawn(send_acks(acks, out));
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut target = None;
        let mut seq = 0;
        let mut batch = Batch::new();
        loop {
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let text: Vec<u8> = buffer.drain(..=end).collect();
                if !line(&shared, &mut target, &mut seq, &text, &tx, &mut batch).await {
                    return;
                }
                if batch.len() >= BATCH_ROWS && !flush(&shared, &target, &mut batch, &tx).await {
                    return;
                }
            }
            // What has arrived is appended before waiting for more.
            if !flush(&shared, &target, &mut batch, &tx).await {
                return;
            }
            match data.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(_)) => return,
                None => {
                    // The last line may lack its newline.
                    let rest = std::mem::take(&mut buffer);
                    if line(&shared, &mut target, &mut seq, &rest, &tx, &mut batch).await {
                        flush(&shared, &target, &mut batch, &tx).await;
                    }
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
