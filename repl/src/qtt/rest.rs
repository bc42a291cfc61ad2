//! ksqlDB's REST conformance cases (`rest-query-validation-tests`), run through the real HTTP
//! server on a loopback port, as ksqlDB's own REST test executor runs them:
//!
//! 1. the statements that are not queries go to `POST /ksql` in one request;
//! 2. the inputs are appended, and the runner waits until every persistent query has processed
//!    them (lag 0 everywhere, twice in a row);
//! 3. each query (SELECT, PRINT) goes to `POST /query`, with the case's properties and
//!    `auto.offset.reset=earliest` unless the case says otherwise; a case with
//!    `waitForActivePushQuery` starts its push query first and appends the inputs once it runs;
//! 4. the responses are compared, one per statement: an expected object lists only the keys it
//!    checks (`key|starts_with` by prefix), rows compare as a multiset unless `verifyOrder`;
//!    then the output topics, as for the other cases.
//!
//! A case with `expectedError` passes when a request fails with its status and a message that
//! contains the expected one; a `KsqlStatementErrorMessage` must be a statement error.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eddy_log::Log;
use eddy_sql::Session;
use serde_json::{json, Map, Value};

use super::case::{Case, Rest};
use super::compare::diff;
use super::exec::{check_outputs, create_topics, scratch_log, Verdict};
use super::records::append_input;
use crate::server::{ServeOptions, Server};

/// How long a query's response may take (a push query without LIMIT would take forever).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(case: &Case, rest: &Rest) -> Verdict {
    if let Some(why) = &case.skip {
        return Verdict::Skip(why.clone());
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Verdict::Fail(format!("cannot make a scratch directory: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Verdict::Fail(format!("cannot start a runtime: {e}")),
    };
    let result = scratch_log(dir.path()).and_then(|log| {
        create_topics(case, &log)?;
        let mut session = Session::new(log.clone());
        // As ksqlDB's REST test server is configured.
        session.configure(eddy_sql::session::PUSH_V2_ENABLED, "true");
        session
            .run_in_background()
            .map_err(|e| format!("cannot start the stream threads: {e}"))?;
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let server = runtime
            .block_on(Server::start(session, listen, ServeOptions::default()))
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let verdict = run_on(case, rest, &server, &log);
        runtime
            .block_on(server.stop())
            .map_err(|e| format!("stopping the server: {e}"))?;
        verdict
    });
    match result {
        Ok(v) => v,
        Err(e) => Verdict::Fail(e),
    }
}

/// A response: its status and body.
struct Reply {
    status: u16,
    body: String,
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Result<Reply, String> {
    post_accepting(addr, path, body, "application/json")
}

fn post_accepting(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    accept: &str,
) -> Result<Reply, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(RESPONSE_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .post(format!("http://{addr}{path}"))
        .header("Accept", accept)
        .send(body.to_string())
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the response to POST {path}: {e}"))?;
    Ok(Reply { status, body })
}

/// Whether a statement goes to `/query`: by its first word, as ksqlDB's `/ksql` endpoint takes
/// every statement but those starting with SELECT and PRINT (so a query that does not parse
/// still gets the error `/query` gives).
fn is_query(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or_default();
    first.eq_ignore_ascii_case("SELECT") || first.eq_ignore_ascii_case("PRINT")
}

/// The properties requests carry: the case's, reading from the start unless it says otherwise.
fn properties(case: &Case) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("auto.offset.reset".into(), json!("earliest"));
    for (k, v) in &case.properties {
        p.insert(k.clone(), v.clone());
    }
    p
}

fn run_on(case: &Case, rest: &Rest, server: &Server, log: &Log) -> Result<Verdict, String> {
    let (queries, admin): (Vec<&String>, Vec<&String>) =
        case.statements.iter().partition(|s| is_query(s));
    let props = properties(case);
    let mut actual: Vec<Value> = Vec::new();
    if !admin.is_empty() {
        let joined: Vec<&str> = admin.iter().map(|s| s.as_str()).collect();
        let reply = post(
            server.addr,
            "/ksql",
            &json!({"ksql": joined.join("\n"), "streamsProperties": props}),
        )?;
        if reply.status != 200 {
            return Ok(error_verdict(rest, &reply, "the statements"));
        }
        let entities: Vec<Value> = serde_json::from_str(&reply.body)
            .map_err(|e| format!("the /ksql response is not a JSON array: {e}"))?;
        actual.extend(entities.into_iter().map(|e| json!({ "admin": e })));
    }
    let mut pending_push = None;
    let mut rest_of_queries = queries.as_slice();
    if rest.wait_for_push_query {
        if let Some((first, others)) = queries.split_first() {
            let (addr, body) = (
                server.addr,
                json!({"ksql": first, "streamsProperties": props}),
            );
            let handle = std::thread::spawn(move || post(addr, "/query", &body));
            // A query that fails to start answers at once.
            wait_for(|| {
                handle.is_finished() || server.shared.push.lock().is_ok_and(|p| !p.is_empty())
            })
            .map_err(|_| "the push query never started".to_string())?;
            pending_push = Some(handle);
            rest_of_queries = others;
        }
    }
    produce_inputs(case, server, log)?;
    wait_for(|| caught_up(server))
        .map_err(|_| "the persistent queries never caught up with the inputs".to_string())?;
    let mut replies = Vec::new();
    if let Some(handle) = pending_push {
        replies.push(
            handle
                .join()
                .map_err(|_| "the push query's client panicked".to_string())??,
        );
    }
    for q in rest_of_queries {
        replies.push(post(
            server.addr,
            "/query",
            &json!({"ksql": q, "streamsProperties": props}),
        )?);
    }
    for reply in replies {
        if reply.status != 200 {
            return Ok(error_verdict(rest, &reply, "a query"));
        }
        let messages: Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("the /query response is not JSON: {e}: {}", reply.body))?;
        actual.push(json!({ "query": messages }));
    }
    if rest.proto_pull {
        for q in &queries {
            let reply = post_accepting(
                server.addr,
                "/query",
                &json!({"ksql": q, "streamsProperties": props}),
                "application/vnd.ksql.v1+protobuf",
            )?;
            if reply.status != 200 {
                return Ok(error_verdict(rest, &reply, "a protobuf query"));
            }
            let messages: Vec<Value> = serde_json::from_str(&reply.body)
                .map_err(|e| format!("the protobuf response is not JSON: {e}: {}", reply.body))?;
            actual.push(super::proto_text::response(&messages)?);
        }
    }
    if let Some(e) = &rest.expected_error {
        return Ok(Verdict::Fail(format!(
            "expected an error ({}), but every request succeeded",
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        )));
    }
    if let Some(d) = compare_responses(&rest.responses, &actual, rest.verify_order) {
        return Ok(Verdict::Fail(d));
    }
    let session = server.shared.session();
    if let Some(d) = check_outputs(&session, log, &case.outputs, &[])? {
        return Ok(Verdict::Fail(d));
    }
    Ok(Verdict::Pass)
}

fn produce_inputs(case: &Case, server: &Server, log: &Log) -> Result<(), String> {
    for (i, input) in case.inputs.iter().enumerate() {
        append_input(&server.shared.session(), log, i, input)?;
    }
    Ok(())
}

/// Whether every persistent query has processed everything in its source, twice in a row (a
/// query's output feeds the next one, which is checked after it).
fn caught_up(server: &Server) -> bool {
    let idle = || {
        server
            .shared
            .session()
            .lag()
            .iter()
            .all(|(_, _, _, lag)| *lag == 0)
    };
    idle() && {
        std::thread::sleep(Duration::from_millis(20));
        idle()
    }
}

fn wait_for(mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + RESPONSE_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The verdict on a failed request: a pass if the case expects this error.
fn error_verdict(rest: &Rest, reply: &Reply, what: &str) -> Verdict {
    let actual: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let message = actual
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or(&reply.body);
    let Some(expected) = &rest.expected_error else {
        return Verdict::Fail(format!("{what} failed with {}: {message}", reply.status));
    };
    let status_ok = expected
        .get("status")
        .and_then(Value::as_u64)
        .is_none_or(|s| s == reply.status as u64);
    let message_ok = expected
        .get("message")
        .and_then(Value::as_str)
        .is_none_or(|m| message.contains(m));
    let type_ok = match expected.get("type").and_then(Value::as_str) {
        Some(t) if t.ends_with("KsqlStatementErrorMessage") => {
            actual.get("@type").and_then(Value::as_str) == Some("statement_error")
        }
        _ => true,
    };
    if status_ok && message_ok && type_ok {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "expected the error {expected}, got {} {}",
            reply.status, reply.body
        ))
    }
}

/// Compares the expected responses (one per statement) with the actual ones.
fn compare_responses(expected: &[Value], actual: &[Value], verify_order: bool) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "expected {} responses but got {}: {}",
            expected.len(),
            actual.len(),
            Value::Array(actual.to_vec())
        ));
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        let found = if let Some(e) = e.get("admin") {
            a.get("admin").map(|a| subset_diff(e, a))
        } else if let Some((key, e)) = ["query", "queryProto"]
            .iter()
            .find_map(|k| e.get(*k).and_then(Value::as_array).map(|e| (*k, e)))
        {
            a.get(key)
                .and_then(Value::as_array)
                .map(|a| query_diff(e, a, verify_order))
        } else {
            Some(None)
        };
        match found {
            None => return Some(format!("response {}: expected {e} but got {a}", i + 1)),
            Some(Some(d)) => return Some(format!("response {}: {d}", i + 1)),
            Some(None) => {}
        }
    }
    None
}

/// The keys `expected` lists, checked in `actual`; `key|starts_with` compares by prefix.
fn subset_diff(expected: &Value, actual: &Value) -> Option<String> {
    let Some(fields) = expected.as_object() else {
        return diff(expected, actual);
    };
    for (key, e) in fields {
        let (name, prefix) = match key.split_once('|') {
            Some((name, how)) if how.eq_ignore_ascii_case("starts_with") => (name, true),
            _ => (key.as_str(), false),
        };
        let Some(a) = actual.get(name) else {
            return Some(format!("expected {name} in {actual}"));
        };
        if prefix {
            let starts = a
                .as_str()
                .zip(e.as_str())
                .is_some_and(|(a, e)| a.starts_with(e));
            if !starts {
                return Some(format!("expected {name} to start with {e}, got {a}"));
            }
        } else if let Some(d) = diff(e, a) {
            return Some(format!("{name}: {d}"));
        }
    }
    None
}

/// A query's messages: the header and final message by their keys, the rows in order or as a
/// multiset.
fn query_diff(expected: &[Value], actual: &[Value], verify_order: bool) -> Option<String> {
    let part = |messages: &[Value], key: &str| -> Vec<Value> {
        messages
            .iter()
            .filter_map(|m| m.get(key).cloned())
            .collect()
    };
    for key in ["header", "finalMessage"] {
        let (e, a) = (part(expected, key), part(actual, key));
        if e.len() != a.len() {
            return Some(format!("expected {key} {e:?} but got {a:?}"));
        }
        for (e, a) in e.iter().zip(&a) {
            if let Some(d) = subset_diff(e, a) {
                return Some(format!("{key}: {d}"));
            }
        }
    }
    let (e_rows, mut a_rows) = (part(expected, "row"), part(actual, "row"));
    if e_rows.len() != a_rows.len() {
        return Some(format!(
            "expected {} rows but got {}: {}",
            e_rows.len(),
            a_rows.len(),
            Value::Array(a_rows)
        ));
    }
    if verify_order {
        for (i, (e, a)) in e_rows.iter().zip(&a_rows).enumerate() {
            if let Some(d) = subset_diff(e, a) {
                return Some(format!("row {}: {d}", i + 1));
            }
        }
        return None;
    }
    for e in &e_rows {
        match a_rows.iter().position(|a| subset_diff(e, a).is_none()) {
            Some(i) => {
                a_rows.remove(i);
            }
            None => {
                return Some(format!(
                    "expected the row {e}, not among {}",
                    Value::Array(a_rows)
                ))
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_compare_by_listed_keys_and_rows_as_a_multiset() {
        let expected = [json!({"query": [
            {"header": {"schema": "`K` STRING", "queryId|starts_with": "transient"}},
            {"row": {"columns": ["a", 1]}},
            {"row": {"columns": ["b", 2]}},
            {"finalMessage": "Limit Reached"}
        ]})];
        let actual = [json!({"query": [
            {"header": {"schema": "`K` STRING", "queryId": "transient_X_1"}},
            {"row": {"columns": ["b", 2]}},
            {"row": {"columns": ["a", 1]}},
            {"finalMessage": "Limit Reached"}
        ]})];
        assert_eq!(compare_responses(&expected, &actual, false), None);
        assert!(compare_responses(&expected, &actual, true).is_some());
        let admin = [json!({"admin": {"@type": "currentStatus"}})];
        let got = [json!({"admin": {"@type": "currentStatus", "commandId": "x"}})];
        assert_eq!(compare_responses(&admin, &got, false), None);
    }
}
