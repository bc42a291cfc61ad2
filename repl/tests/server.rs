//! The server, started as a real process on a free loopback port and used over HTTP as
//! ksqlDB's clients use it.

use std::io::{BufRead, BufReader, Read};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;

use support::{agent, get, insert, ksql, post, pull_until, Server};

#[test]
fn queries_deploy_insert_push_pull_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let created = ksql(
        &url,
        "CREATE STREAM clicks (user STRING KEY, n INT) WITH (kafka_topic='clicks', partitions=2, value_format='JSON');
         CREATE TABLE totals AS SELECT user, COUNT(*) AS clicks, SUM(n) AS total FROM clicks GROUP BY user;",
    );
    assert_eq!(created[0]["@type"], "currentStatus");
    assert_eq!(created[0]["commandStatus"]["status"], "SUCCESS");
    assert_eq!(created[1]["commandStatus"]["queryId"], "CTAS_TOTALS_0");

    let acks = insert(
        &url,
        "clicks",
        &[
            json!({"USER": "ada", "N": 3}),
            json!({"user": "bob", "n": 4}),
            json!({"user": "ada", "nope": 1}),
            json!({"user": "ada", "n": 5}),
        ],
    );
    assert_eq!(acks[0], json!({"status": "ok", "seq": 0}));
    assert_eq!(acks[2]["status"], "error");
    assert_eq!(acks[3], json!({"status": "ok", "seq": 3}));

    // A push query streams rows and ends at its LIMIT with ksqlDB's final message.
    let (status, body) = post(
        &url,
        "/query",
        &json!({"ksql": "SELECT user, n FROM clicks WHERE n > 3 EMIT CHANGES LIMIT 2;",
                "streamsProperties": {"auto.offset.reset": "earliest"}})
        .to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let messages: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        messages[0]["header"]["schema"],
        "`USER` STRING, `N` INTEGER"
    );
    let mut rows: Vec<Value> = messages[1..3]
        .iter()
        .map(|m| m["row"]["columns"].clone())
        .collect();
    rows.sort_by_key(|r| r.to_string());
    assert_eq!(rows, [json!(["ada", 5]), json!(["bob", 4])]);
    assert_eq!(messages[3], json!({"finalMessage": "Limit Reached"}));

    // The same through /query-stream, delimited.
    let (status, body) = post(
        &url,
        "/query-stream",
        &json!({"sql": "SELECT * FROM totals WHERE user = 'ada';"}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["columnNames"], json!(["USER", "CLICKS", "TOTAL"]));

    let rows = pull_until(&url, "SELECT * FROM totals;", |r| r.len() == 2);
    let mut rows = rows;
    rows.sort_by_key(|r| r.to_string());
    assert_eq!(rows, [json!(["ada", 2, 8]), json!(["bob", 1, 4])]);
    server.stop();

    // After a restart the query is there under its id, resumes, and the table still answers.
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let queries = ksql(&url, "SHOW QUERIES;");
    assert_eq!(queries[0]["queries"][0]["id"], "CTAS_TOTALS_0");
    pull_until(&url, "SELECT * FROM totals WHERE user = 'bob';", |r| {
        r == [json!(["bob", 1, 4])]
    });
    insert(&url, "CLICKS", &[json!({"USER": "bob", "N": 10})]);
    pull_until(&url, "SELECT * FROM totals WHERE user = 'bob';", |r| {
        r == [json!(["bob", 2, 14])]
    });
    let (_, metrics) = get(&url, "/metrics");
    assert!(
        metrics.contains("eddy_query_records_in_total{query=\"CTAS_TOTALS_0\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "eddy_query_lag_records{query=\"CTAS_TOTALS_0\",topic=\"clicks\",partition=\"1\"}"
        ),
        "{metrics}"
    );
    // Per task, with the stream thread that runs it.
    assert!(
        metrics.contains(
            "eddy_task_records_in_total{query=\"CTAS_TOTALS_0\",task=\"0_1\",thread=\"stream-thread-"
        ),
        "{metrics}"
    );

    // TERMINATE removes a query for good.
    let terminated = ksql(&url, "TERMINATE CTAS_TOTALS_0;");
    assert_eq!(terminated[0]["@type"], "currentStatus");
    server.stop();
    let server = Server::start(dir.path(), &[]);
    let queries = ksql(&server.url, "SHOW QUERIES;");
    assert_eq!(queries[0]["queries"], json!([]));
}

#[test]
fn a_push_query_without_limit_ends_on_close_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    ksql(
        &url,
        "CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', partitions=1, value_format='JSON');",
    );
    let push_url = url.clone();
    let reader = std::thread::spawn(move || {
        let response = agent()
            .post(format!("{push_url}/query-stream"))
            .send(json!({"sql": "SELECT * FROM s EMIT CHANGES;"}).to_string())
            .unwrap();
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        let header: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let id = header["queryId"].as_str().unwrap().to_string();
        let first_row = lines.next().unwrap().unwrap();
        (id, first_row, lines.count())
    });
    // Rows written after the query started arrive while it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = get(&url, "/metrics");
        if metrics.contains("eddy_push_queries_running 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the push query never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    insert(&url, "S", &[json!({"K": "a", "V": 1})]);
    let (_, metrics) = get(&url, "/metrics");
    assert!(metrics.contains("eddy_push_queries_running 1"), "{metrics}");
    // Find the query's id from the running set by closing every candidate: /close-query
    // names the one the reader got.
    let (status, _) = post(
        &url,
        "/close-query",
        &json!({"queryId": "transient_S_1"}).to_string(),
        None,
    );
    assert_eq!(status, 200);
    let (id, first_row, rest) = reader.join().unwrap();
    assert_eq!(id, "transient_S_1");
    assert_eq!(first_row, r#"["a",1]"#);
    assert_eq!(rest, 0);
    let (status, body) = post(
        &url,
        "/close-query",
        &json!({"queryId": "transient_S_1"}).to_string(),
        None,
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn bad_requests_get_errors_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let (status, body) = post(&url, "/ksql", "{not json", None);
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["@type"], "generic_error");
    assert_eq!(error["error_code"], 40000);

    let (status, body) = post(&url, "/ksql", &json!({"ksql": "CREATE STREAM x (a INT) WITH (kafka_topic='x', partitions=1, value_format='JSON');\nSELEKT 1;"}).to_string(), None);
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["@type"], "statement_error");
    assert!(
        error["message"].as_str().unwrap().starts_with("line 2:1:"),
        "{error}"
    );
    assert_eq!(error["entities"][0]["@type"], "currentStatus");

    let (status, body) = post(
        &url,
        "/ksql",
        &json!({"ksql": "SELECT * FROM x EMIT CHANGES;"}).to_string(),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'/query'"), "{body}");

    let (status, _) = get(&url, "/nowhere");
    assert_eq!(status, 404);
    // A body over the limit gets 413; the server may answer before the client has sent it
    // all and close the connection, which the client then sees as a failed send.
    let big = json!({ "ksql": "x".repeat(2 << 20) }).to_string();
    match agent().post(format!("{url}/ksql")).send(&big) {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(ureq::Error::Io(_)) => {}
        Err(e) => panic!("unexpected: {e}"),
    }
    let (status, body) = get(&url, "/healthcheck");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["isHealthy"],
        true
    );
    let (status, body) = get(&url, "/info");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("KsqlServerInfo"), "{body}");
}

#[test]
fn a_token_guards_every_endpoint_but_the_healthcheck() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--auth-token", "s3cret"]);
    let url = server.url.clone();
    let body = json!({"ksql": "SHOW STREAMS;"}).to_string();
    assert_eq!(post(&url, "/ksql", &body, None).0, 401);
    assert_eq!(post(&url, "/ksql", &body, Some("wrong")).0, 401);
    assert_eq!(post(&url, "/ksql", &body, Some("s3cret")).0, 200);
    assert_eq!(get(&url, "/info").0, 401);
    assert_eq!(get(&url, "/healthcheck").0, 200);
}

#[test]
fn a_headless_server_runs_its_file_and_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queries.sql");
    std::fs::write(
        &file,
        "SET 'auto.offset.reset'='earliest';
         CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', partitions=1, value_format='JSON');
         CREATE STREAM doubled AS SELECT k, v * 2 AS v2 FROM s;",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--queries-file", file.to_str().unwrap()]);
    let url = server.url.clone();
    let (status, body) = post(
        &url,
        "/ksql",
        &json!({"ksql": "SHOW QUERIES;"}).to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CSAS_DOUBLED_"), "{body}");
    let (status, body) = post(
        &url,
        "/ksql",
        &json!({"ksql": "DROP STREAM doubled;"}).to_string(),
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("headless"), "{body}");
    insert(&url, "S", &[json!({"K": "a", "V": 21})]);
    let (status, body) = post(
        &url,
        "/query",
        &json!({"ksql": "SELECT * FROM doubled EMIT CHANGES LIMIT 1;",
                "streamsProperties": {"auto.offset.reset": "earliest"}})
        .to_string(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"{"row":{"columns":["a",42]}}"#), "{body}");
}

/// The requests of ksqlDB's REST API documentation, sent by curl exactly as the documentation
/// writes them (the host and port aside): a client no one here wrote. HTTP/2 without TLS
/// (`--http2-prior-knowledge`) for /query-stream, as the documentation's example uses.
#[test]
fn the_curl_examples_of_ksqldbs_documentation_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // docs.ksqldb.io, "Run a statement" (/ksql).
    let created = curl(&[
        "-X", "POST", &format!("{url}/ksql"),
        "-H", "Accept: application/vnd.ksql.v1+json",
        "-d", "{\n  \"ksql\": \"CREATE STREAM pageviews_home (viewtime BIGINT, userid VARCHAR, pageid VARCHAR) WITH (KAFKA_TOPIC='pageviews', PARTITIONS=1, VALUE_FORMAT='JSON');\",\n  \"streamsProperties\": {\n    \"ksql.streams.auto.offset.reset\": \"earliest\"\n  }\n}",
    ]);
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(
        created[0]["commandStatus"]["status"], "SUCCESS",
        "{created}"
    );
    let listed = curl(&[
        "-X",
        "POST",
        &format!("{url}/ksql"),
        "-H",
        "Accept: application/vnd.ksql.v1+json",
        "-d",
        "{\"ksql\": \"LIST STREAMS;\", \"streamsProperties\": {}}",
    ]);
    assert!(listed.contains("\"name\":\"PAGEVIEWS_HOME\""), "{listed}");
    // "Insert new rows into a stream" (/inserts-stream), HTTP/2.
    let acks = curl(&[
        "--http2-prior-knowledge", "-X", "POST", &format!("{url}/inserts-stream"),
        "-d", "{\"target\":\"PAGEVIEWS_HOME\"}\n{\"VIEWTIME\":1,\"USERID\":\"User_1\",\"PAGEID\":\"Page_1\"}\n{\"VIEWTIME\":2,\"USERID\":\"User_2\",\"PAGEID\":\"Page_2\"}",
    ]);
    assert_eq!(
        acks,
        "{\"status\":\"ok\",\"seq\":0}\n{\"status\":\"ok\",\"seq\":1}\n"
    );
    // "Run a query and stream back the results" (/query-stream), HTTP/2.
    let rows = curl(&[
        "--http2-prior-knowledge", "-X", "POST", &format!("{url}/query-stream"),
        "-d", "{\"sql\":\"SELECT * FROM PAGEVIEWS_HOME EMIT CHANGES LIMIT 2;\",\"properties\":{\"auto.offset.reset\":\"earliest\"}}",
    ]);
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 3, "{rows}");
    assert!(
        lines[0].contains("\"columnNames\":[\"VIEWTIME\",\"USERID\",\"PAGEID\"]"),
        "{rows}"
    );
    assert_eq!(lines[1], "[1,\"User_1\",\"Page_1\"]");
    // "Run a query" (/query, v1), HTTP/1.1.
    let v1 = curl(&[
        "-X", "POST", &format!("{url}/query"),
        "-H", "Content-Type: application/vnd.ksql.v1+json; charset=utf-8",
        "-d", "{\"ksql\": \"SELECT * FROM pageviews_home EMIT CHANGES LIMIT 1;\", \"streamsProperties\": {\"ksql.streams.auto.offset.reset\": \"earliest\"}}",
    ]);
    let v1: Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1[2]["finalMessage"], "Limit Reached", "{v1}");
    let mut info = String::new();
    Command::new("curl")
        .args(["-sS", &format!("{url}/info")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
        .stdout
        .unwrap()
        .read_to_string(&mut info)
        .unwrap();
    assert!(info.contains("\"serverStatus\":\"RUNNING\""), "{info}");
}

/// `eddy --server URL`: the REPL over the REST API, typed into through a pseudo-terminal.
#[test]
fn the_repl_works_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--auth-token", "t0ken"]);
    let cmd = format!(
        "{} --server {} --token t0ken",
        env!("CARGO_BIN_EXE_eddy"),
        server.url
    );
    let mut p = rexpect::spawn(&cmd, Some(20_000)).expect("eddy starts");
    p.exp_string(&format!("on {}", server.url)).unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', partitions=1, value_format='JSON');")
        .unwrap();
    p.exp_string("STREAM created").unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("INSERT INTO s (k, v) VALUES ('a', 1);")
        .unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("SET 'auto.offset.reset'='earliest';").unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("SELECT k, v * 10 AS v10 FROM s EMIT CHANGES LIMIT 1;")
        .unwrap();
    p.exp_string("|V10").unwrap();
    p.exp_string("|a            |10").unwrap();
    p.exp_string("Limit Reached").unwrap();
    p.exp_string("eddy> ").unwrap();
    // Ctrl-C closes a push query on the server and returns to the prompt.
    p.send_line("SELECT * FROM s EMIT CHANGES;").unwrap();
    p.exp_string("|a ").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send_control('c').unwrap();
    p.exp_string("Query terminated").unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("SHOW STREAMS;").unwrap();
    p.exp_string("S           | s").unwrap();
    // Sent before the prompt, Ctrl-D can be flushed away as the terminal enters raw mode.
    p.exp_string("eddy> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let (_, metrics) = get(&server.url, "/healthcheck");
    assert!(metrics.contains("isHealthy"));
}
