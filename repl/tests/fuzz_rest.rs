//! Fuzz target of the REST API's request bodies (see `eddy-fuzz`): mutated bodies for
//! `/ksql`, `/query`, `/query-stream`, `/inserts-stream` and `/close-query`, sent to a real
//! server. Whatever a body holds, the server answers (an error is fine) and no handler panics:
//! the server's log is watched for panics after every request.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

const ENDPOINTS: [&str; 5] = [
    "/ksql",
    "/query",
    "/query-stream",
    "/inserts-stream",
    "/close-query",
];

fn seeds() -> Vec<Vec<u8>> {
    let bodies: [(usize, &str); 9] = [
        (
            0,
            r#"{"ksql": "CREATE STREAM t2 AS SELECT id, v * 2 AS w FROM s WHERE v > 1; SHOW QUERIES;", "streamsProperties": {"auto.offset.reset": "earliest"}}"#,
        ),
        (
            0,
            r#"{"ksql": "DESCRIBE EXTENDED s; LIST TOPICS; SHOW STREAMS;"}"#,
        ),
        (
            0,
            r#"{"ksql": "INSERT INTO s (id, v) VALUES ('a', 1);", "sessionVariables": {"x": "1"}}"#,
        ),
        (
            1,
            r#"{"ksql": "SELECT * FROM s EMIT CHANGES LIMIT 1;", "streamsProperties": {"auto.offset.reset": "earliest"}}"#,
        ),
        (1, r#"{"ksql": "SELECT * FROM tab WHERE id = 'a';"}"#),
        (
            2,
            r#"{"sql": "SELECT id, v FROM s EMIT CHANGES LIMIT 1;", "properties": {"auto.offset.reset": "earliest"}}"#,
        ),
        (
            3,
            "{\"target\": \"s\"}\n{\"id\": \"b\", \"v\": 2}\n{\"ID\": \"c\", \"V\": \"x\"}",
        ),
        (4, r#"{"queryId": "transient_S_1"}"#),
        (0, r#"{"ksql": "TERMINATE ALL;"}"#),
    ];
    bodies
        .iter()
        .map(|(endpoint, body)| [&[*endpoint as u8][..], body.as_bytes()].concat())
        .collect()
}

#[test]
fn fuzz_rest_request_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("eddy server listening on ")
        .unwrap()
        .to_string();
    support::ksql(
        &url,
        "CREATE STREAM s (id STRING KEY, v INT) WITH (kafka_topic='s', partitions=1, value_format='JSON');
         CREATE TABLE tab AS SELECT id, COUNT(*) AS n FROM s GROUP BY id;",
    );
    // A push query without LIMIT runs until its client goes: the client gives up quickly.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .into();
    let mut server_log = std::fs::File::open(&log_path).unwrap();
    let mut seen = 0u64;
    let report = eddy_fuzz::run("rest_bodies", seeds(), |input| {
        let Some((&pick, body)) = input.split_first() else {
            return;
        };
        let path = ENDPOINTS[pick as usize % ENDPOINTS.len()];
        let request = agent
            .post(format!("{url}{path}"))
            .header("Content-Type", "application/json");
        if let Ok(mut response) = request.send(body) {
            let status = response.status().as_u16();
            let _ = response.body_mut().read_to_string();
            assert!(status < 500 || status == 503, "{path} answered {status}");
        }
        // Panics in the server's handlers show in its log only.
        server_log.seek(SeekFrom::Start(seen)).unwrap();
        let mut new = String::new();
        server_log.read_to_string(&mut new).unwrap();
        seen += new.len() as u64;
        if let Some(at) = new.find("panicked at") {
            panic!("the server panicked on {path}: {}", &new[at..]);
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
    });
    assert!(report.executions > 0);
    let (status, _) = support::get(&url, "/healthcheck");
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
}
