//! `GET /metrics`: Prometheus' text format. Per persistent query: records in and out (totals
//! and one-minute rates), processing-log entries, lag per input partition; per state store, its
//! approximate size; the number of push queries running.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{error_response, Shared};

/// A label value with Prometheus' escapes.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = tokio::task::spawn_blocking(move || render(&shared)).await;
    match text {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Ok(Err(e)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, 50000, &e.to_string()),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, 50000, &e.to_string()),
    }
}

fn render(shared: &Shared) -> Result<String, eddy_sql::SqlError> {
    let session = shared.session();
    let queries = session.query_infos();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = match labels.is_empty() {
                true => writeln!(out, "{name} {value}"),
                false => writeln!(out, "{name}{{{labels}}} {value}"),
            };
        }
    };
    let per_query = |f: &dyn Fn(&eddy_sql::QueryInfo) -> String| -> Vec<(String, String)> {
        queries
            .iter()
            .map(|q| (format!("query=\"{}\"", label(&q.id)), f(q)))
            .collect()
    };
    family(
        "eddy_query_records_in_total",
        "counter",
        "Records a persistent query read from its source since the server started.",
        per_query(&|q| q.metrics.records_in.total().to_string()),
    );
    family(
        "eddy_query_records_in_per_second",
        "gauge",
        "Records read per second, averaged over the last minute.",
        per_query(&|q| q.metrics.records_in.per_second().to_string()),
    );
    family(
        "eddy_query_records_out_total",
        "counter",
        "Records a persistent query wrote to its sink since the server started.",
        per_query(&|q| q.metrics.records_out.total().to_string()),
    );
    family(
        "eddy_query_records_out_per_second",
        "gauge",
        "Records written per second, averaged over the last minute.",
        per_query(&|q| q.metrics.records_out.per_second().to_string()),
    );
    family(
        "eddy_query_processing_errors_total",
        "counter",
        "Entries a query wrote to the processing log since the server started.",
        per_query(&|q| session.processing_errors(&q.id).to_string()),
    );
    let per_task = |f: &dyn Fn(&eddy_sql::TaskInfo) -> u64| -> Vec<(String, String)> {
        queries
            .iter()
            .flat_map(|q| {
                q.tasks.iter().map(|t| {
                    let labels = format!(
                        "query=\"{}\",task=\"{}\",thread=\"{}\"",
                        label(&q.id),
                        label(&t.id),
                        label(&t.thread)
                    );
                    (labels, f(t).to_string())
                })
            })
            .collect()
    };
    family(
        "eddy_task_records_in_total",
        "counter",
        "Records a task of a persistent query read since the server started.",
        per_task(&|t| t.records_in),
    );
    family(
        "eddy_task_records_out_total",
        "counter",
        "Records a task wrote to its query's sink (or repartition topic) since the server started.",
        per_task(&|t| t.records_out),
    );
    family(
        "eddy_task_lag_records",
        "gauge",
        "Records in a task's input partitions that it has not processed and committed yet.",
        per_task(&|t| t.lag),
    );
    let lag = session
        .lag()
        .into_iter()
        .map(|(q, topic, p, lag)| {
            (
                format!(
                    "query=\"{}\",topic=\"{}\",partition=\"{p}\"",
                    label(&q),
                    label(&topic)
                ),
                lag.to_string(),
            )
        })
        .collect();
    family(
        "eddy_query_lag_records",
        "gauge",
        "Records in an input partition that a query has not processed yet.",
        lag,
    );
    let stores = session
        .state_store_sizes()?
        .into_iter()
        .map(|(store, bytes)| (format!("store=\"{}\"", label(&store)), bytes.to_string()))
        .collect();
    family(
        "eddy_state_store_bytes",
        "gauge",
        "Approximate bytes of a state store in RocksDB's files.",
        stores,
    );
    let push = shared.push.lock().map_or(0, |p| p.len());
    family(
        "eddy_push_queries_running",
        "gauge",
        "Push queries streaming to clients.",
        vec![(String::new(), push.to_string())],
    );
    Ok(out)
}
