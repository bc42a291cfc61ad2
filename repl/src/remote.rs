//! `eddy --server URL`: the REPL (and `-e` / `-f`) over a server's REST API, as the ksql CLI
//! talks to ksqlDB.
//!
//! As in the ksql CLI, `SET`/`UNSET` and `DEFINE`/`UNDEFINE` are the client's: properties go
//! with every request (`streamsProperties`), variables are substituted before a statement is
//! sent, and `RUN SCRIPT` reads a file on the client's machine. Queries and PRINT go to
//! `/query` and print as they stream in; Ctrl-C sends `/close-query` for the running push
//! query. Everything else goes to `/ksql`, and its entities print as the embedded REPL prints
//! the same statements.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use eddy_sql::ast::Statement;
use eddy_sql::script::{parse_piece, run_script_path, split, substitute};
use serde_json::{json, Map, Value};

use crate::output::{error_text, print_table};
use crate::repl::Backend;

pub struct Remote {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
    properties: Map<String, Value>,
    variables: BTreeMap<String, String>,
    functions: Vec<String>,
}

/// A value as the ksql CLI shows it: strings bare, others as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The column names of a ksqlDB schema text: `` `K` STRING KEY, `V` INTEGER `` → K, V.
fn schema_names(schema: &str) -> Vec<String> {
    schema
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// One message of a `/query` response line: `[{...}`, `,{...}` or `,{...}]` → `{...}`.
fn message(line: &str) -> Option<Value> {
    let t = line.trim().trim_start_matches(['[', ',']);
    let t = t
        .strip_suffix(',')
        .or_else(|| t.strip_suffix(']'))
        .unwrap_or(t);
    serde_json::from_str(t).ok()
}

impl Remote {
    /// Connects to the server at `url` (checking `/info`).
    pub fn connect(url: &str, token: Option<String>) -> Result<Remote> {
        let remote = Remote {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            url: url.trim_end_matches('/').to_string(),
            token,
            properties: Map::new(),
            variables: BTreeMap::new(),
            functions: Vec::new(),
        };
        let (status, body) = remote.get("/info")?;
        if status != 200 {
            bail!("{url} answered /info with {status}: {body}");
        }
        Ok(remote)
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut request = self.agent.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        let mut response = request
            .call()
            .map_err(|e| anyhow!("cannot reach {}: {e}", self.url))?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    }

    fn post(&self, path: &str, body: &Value) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self.agent.post(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        request
            .send(body.to_string())
            .map_err(|e| anyhow!("cannot reach {}: {e}", self.url))
    }

    /// The server's error message from an error response.
    fn error_of(body: &str) -> String {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| body.to_string())
    }

    /// Runs a script: each statement in turn, stopping at the first that fails (its error is
    /// returned).
    pub fn run_script(&mut self, text: &str, interrupted: &AtomicBool) -> Result<()> {
        for piece in split(text) {
            let substituted = substitute(piece.text, &self.variables);
            if let Some(path) = run_script_path(&substituted) {
                let file = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow!("Failed to read file: {path}: {e}"))?;
                self.run_script(&file, interrupted)?;
                continue;
            }
            let statements =
                parse_piece(&piece, &self.variables).map_err(|e| anyhow!(error_text(&e, text)))?;
            for (stmt, stmt_text) in statements {
                self.statement(&stmt, &stmt_text, interrupted)?;
            }
        }
        Ok(())
    }

    fn statement(&mut self, stmt: &Statement, text: &str, interrupted: &AtomicBool) -> Result<()> {
        match stmt {
            Statement::Set { name, value } => {
                self.properties.insert(name.clone(), json!(value));
                println!("Successfully changed local property '{name}' to '{value}'.");
            }
            Statement::Unset(name) => {
                self.properties.remove(name);
                println!("Successfully unset local property '{name}'.");
            }
            Statement::Define { name, value } => {
                self.variables
                    .insert(name.to_ascii_lowercase(), value.clone());
                println!("Defined variable {name}");
            }
            Statement::Undefine(name) => {
                self.variables.remove(&name.to_ascii_lowercase());
                println!("Undefined variable {name}");
            }
            Statement::Query(select) if select.emit.is_none() => self.pull(text)?,
            Statement::Query(_) | Statement::Print(_) => self.stream(text, interrupted)?,
            _ => self.ksql(text)?,
        }
        Ok(())
    }

    /// Sends one statement to `path` with the client's properties; the response, which must
    /// be a success (otherwise the server's message is the error).
    fn send(&self, path: &str, text: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let mut response = self.post(
            path,
            &json!({"ksql": format!("{text};"), "streamsProperties": self.properties}),
        )?;
        if response.status().as_u16() != 200 {
            let body = response.body_mut().read_to_string()?;
            bail!("{}", Self::error_of(&body));
        }
        Ok(response)
    }

    fn ksql(&self, text: &str) -> Result<()> {
        let body = self.send("/ksql", text)?.body_mut().read_to_string()?;
        let entities: Vec<Value> = serde_json::from_str(&body)?;
        for e in &entities {
            show_entity(e);
        }
        Ok(())
    }

    fn pull(&self, text: &str) -> Result<()> {
        let body = self.send("/query", text)?.body_mut().read_to_string()?;
        let messages: Vec<Value> = serde_json::from_str(&body)?;
        let columns = messages
            .first()
            .and_then(|m| m.pointer("/header/schema"))
            .and_then(Value::as_str)
            .map(schema_names)
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = messages
            .iter()
            .filter_map(|m| m.pointer("/row/columns").and_then(Value::as_array))
            .map(|r| r.iter().map(cell).collect())
            .collect();
        print_table(&columns, &rows);
        Ok(())
    }

    /// A push query or PRINT: lines as they arrive, until the server ends the response or
    /// Ctrl-C (which closes the push query on the server).
    fn stream(&self, text: &str, interrupted: &AtomicBool) -> Result<()> {
        interrupted.store(false, Ordering::Release);
        let response = self.send("/query", text)?;
        let (tx, rx) = mpsc::channel::<String>();
        let reader = BufReader::new(response.into_body().into_reader());
        // The response is read on its own thread, so that Ctrl-C is noticed while it waits.
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut query_id = None;
        let mut widths: Vec<usize> = Vec::new();
        let mut out = std::io::stdout().lock();
        loop {
            if interrupted.swap(false, Ordering::AcqRel) {
                match &query_id {
                    Some(id) => {
                        let _ = self.post("/close-query", &json!({ "queryId": id }));
                    }
                    None => break,
                }
            }
            let line = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let Some(m) = message(&line) else {
                // PRINT's lines are text.
                writeln!(out, "{line}")?;
                out.flush()?;
                continue;
            };
            if let Some(header) = m.get("header") {
                query_id = header
                    .get("queryId")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let names = header
                    .get("schema")
                    .and_then(Value::as_str)
                    .map(schema_names)
                    .unwrap_or_default();
                widths = names.iter().map(|n| n.chars().count().max(12)).collect();
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 1)).collect();
                let rule = format!("+{}+", rule.join("+"));
                writeln!(out, "{rule}\n{}\n{rule}", row_text(&names, &widths))?;
            } else if let Some(cells) = m.pointer("/row/columns").and_then(Value::as_array) {
                let cells: Vec<String> = cells.iter().map(cell).collect();
                writeln!(out, "{}", row_text(&cells, &widths))?;
            } else if let Some(f) = m.get("finalMessage").and_then(Value::as_str) {
                writeln!(out, "{f}")?;
            }
            out.flush()?;
        }
        writeln!(out, "Query terminated")?;
        Ok(())
    }
}

fn row_text(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let w = widths.get(i).copied().unwrap_or(12);
            format!("{c:<w$} ")
        })
        .collect();
    format!("|{}|", padded.join("|"))
}

/// Prints one of `/ksql`'s entities as the embedded REPL prints the same statement's outcome.
fn show_entity(e: &Value) {
    let rows_of = |items: &[Value], keys: &[&str]| -> Vec<Vec<String>> {
        items
            .iter()
            .map(|i| {
                keys.iter()
                    .map(|k| i.get(*k).map(cell).unwrap_or_default())
                    .collect()
            })
            .collect()
    };
    let list = |key: &str| {
        e.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let columns = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    match e.get("@type").and_then(Value::as_str).unwrap_or_default() {
        "currentStatus" => {
            println!(
                "{}",
                e.pointer("/commandStatus/message")
                    .map(cell)
                    .unwrap_or_default()
            )
        }
        "streams" | "tables" => {
            let key = if e["@type"] == "streams" {
                "streams"
            } else {
                "tables"
            };
            let title = if key == "streams" {
                "Stream Name"
            } else {
                "Table Name"
            };
            print_table(
                &columns(&[title, "Kafka Topic", "Key Format", "Value Format"]),
                &rows_of(&list(key), &["name", "topic", "keyFormat", "valueFormat"]),
            );
        }
        "queries" => print_table(
            &columns(&["Query ID", "Status", "Sink Name", "Query String"]),
            &list("queries")
                .iter()
                .map(|q| {
                    vec![
                        q.get("id").map(cell).unwrap_or_default(),
                        q.get("state").map(cell).unwrap_or_default(),
                        q.pointer("/sinks/0").map(cell).unwrap_or_default(),
                        q.get("queryString").map(cell).unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        "kafka_topics" => print_table(
            &columns(&["Kafka Topic", "Partitions"]),
            &list("topics")
                .iter()
                .map(|t| {
                    let partitions = t
                        .get("replicaInfo")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    vec![
                        t.get("name").map(cell).unwrap_or_default(),
                        partitions.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        "properties" => print_table(
            &columns(&["Property", "Value"]),
            &rows_of(&list("properties"), &["name", "value"]),
        ),
        "variables" => print_table(
            &columns(&["Variable Name", "Value"]),
            &rows_of(&list("variables"), &["name", "value"]),
        ),
        "sourceDescription" if e.get("sourceDescription").is_some() => {
            let fields = e
                .pointer("/sourceDescription/fields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rows: Vec<Vec<String>> = fields
                .iter()
                .map(|f| {
                    let mut ty = f.pointer("/schema/type").map(cell).unwrap_or_default();
                    if f.get("type").and_then(Value::as_str) == Some("KEY") {
                        ty.push_str(" (key)");
                    }
                    vec![f.get("name").map(cell).unwrap_or_default(), ty]
                })
                .collect();
            print_table(&columns(&["Field", "Type"]), &rows);
        }
        _ => {
            if let Some(text) = e.get("text").and_then(Value::as_str) {
                println!("{text}");
            } else if let Some(rows) = e.get("rows").and_then(Value::as_array) {
                let keys: Vec<String> = rows
                    .first()
                    .and_then(Value::as_object)
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                print_table(&keys, &rows_of(rows, &key_refs));
            } else {
                println!("{e}");
            }
        }
    }
}

impl Remote {
    /// `/ksql`'s entities for `sql`, or none if the request fails.
    fn fetch(&self, sql: &str) -> Vec<Value> {
        self.post("/ksql", &json!({ "ksql": sql }))
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|b| serde_json::from_str::<Vec<Value>>(&b).ok())
            .unwrap_or_default()
    }
}

impl Backend for Remote {
    fn execute(&mut self, text: &str, interrupted: &AtomicBool) {
        if let Err(e) = self.run_script(text, interrupted) {
            eprintln!("{e}");
        }
    }

    fn names(&mut self) -> Vec<String> {
        if self.functions.is_empty() {
            self.functions = self
                .fetch("SHOW FUNCTIONS;")
                .first()
                .and_then(|e| e.get("rows").and_then(Value::as_array))
                .map(|rows| {
                    rows.iter()
                        .filter_map(|r| r.get("Function Name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
        }
        let mut words = self.functions.clone();
        for e in self.fetch("SHOW STREAMS; SHOW TABLES;") {
            for key in ["streams", "tables"] {
                for s in e.get(key).and_then(Value::as_array).into_iter().flatten() {
                    for k in ["name", "topic"] {
                        if let Some(n) = s.get(k).and_then(Value::as_str) {
                            words.push(n.to_string());
                        }
                    }
                }
            }
        }
        words.sort();
        words.dedup();
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lines_and_schemas_parse() {
        assert_eq!(
            schema_names("`K` STRING KEY, `V` ARRAY<INTEGER>"),
            ["K", "V"]
        );
        assert_eq!(
            message(r#"[{"header":{"queryId":"q"}}"#),
            Some(json!({"header": {"queryId": "q"}}))
        );
        assert_eq!(
            message(r#",{"finalMessage":"Limit Reached"}]"#),
            Some(json!({"finalMessage": "Limit Reached"}))
        );
        assert_eq!(message("rowtime: 2024/01/01 ..., key: a"), None);
    }
}
