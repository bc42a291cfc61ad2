//! What the integration tests of the server share: the server as a real process on a free
//! loopback port, and HTTP calls to it as ksqlDB's clients make them.
// Each test crate uses only some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The Kafka listener's address, with `--kafka-listen`.
    pub kafka: Option<String>,
    /// Kept open: the server writes to it after its first lines.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--data-dir")
            .arg(dir)
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("eddy server starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("eddy server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        let kafka = extra.contains(&"--kafka-listen").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("eddy kafka listener on ")
                .unwrap_or_else(|| panic!("unexpected second line: {line}"))
                .to_string()
        });
        Server {
            child,
            url,
            kafka,
            _stdout: stdout,
        }
    }

    /// Stops the server as a service manager does (SIGTERM), and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the server exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body`; the status and the body as text.
pub fn post(url: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut request = agent().post(format!("{url}{path}"));
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

pub fn get(url: &str, path: &str) -> (u16, String) {
    let mut response = agent().get(format!("{url}{path}")).call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

pub fn ksql(url: &str, statements: &str) -> Value {
    ksql_as(url, statements, None)
}

/// `/ksql` with `auto.offset.reset` earliest, sending `token` if given; the answer must be 200.
pub fn ksql_as(url: &str, statements: &str, token: Option<&str>) -> Value {
    let (status, body) = post(
        url,
        "/ksql",
        &json!({"ksql": statements, "streamsProperties": {"auto.offset.reset": "earliest"}})
            .to_string(),
        token,
    );
    assert_eq!(status, 200, "{statements}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A pull query's rows, retried until `until` holds (the persistent queries run in the
/// background and may still be catching up).
pub fn pull_until(url: &str, sql: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    pull_until_as(url, sql, None, until)
}

pub fn pull_until_as(
    url: &str,
    sql: &str,
    token: Option<&str>,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = post(url, "/query", &json!({ "ksql": sql }).to_string(), token);
        assert_eq!(status, 200, "{body}");
        let messages: Vec<Value> = serde_json::from_str(&body).unwrap();
        let rows: Vec<Value> = messages
            .iter()
            .filter_map(|m| m.get("row").map(|r| r["columns"].clone()))
            .collect();
        if until(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{sql} never matched: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Rows into a stream through `/inserts-stream`; one acknowledgement per row.
pub fn insert(url: &str, target: &str, rows: &[Value]) -> Vec<Value> {
    insert_as(url, target, rows, None)
}

pub fn insert_as(url: &str, target: &str, rows: &[Value], token: Option<&str>) -> Vec<Value> {
    let mut body = json!({ "target": target }).to_string();
    for r in rows {
        body.push('\n');
        body.push_str(&r.to_string());
    }
    let (status, text) = post(url, "/inserts-stream", &body, token);
    assert_eq!(status, 200, "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The readable records of every partition of `topic`, or none if it does not exist yet.
pub fn read_topic(log: &eddy_log::Log, topic: &str) -> Vec<eddy_log::StoredRecord> {
    let Ok(t) = log.topic(topic) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in t.partitions() {
        let mut offset = p.start_offset();
        loop {
            let batch = p.read(offset, eddy_log::ReadLimits::default()).unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            out.extend(batch);
        }
    }
    out
}
