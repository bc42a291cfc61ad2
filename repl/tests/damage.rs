//! Damage on disk, as a user meets it: a query stops with an error naming the lost records,
//! `eddy topic verify` lists them, and only `eddy topic repair --skip-damaged` moves past them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::{ksql, Server};

fn eddy(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// The query's state in SHOW QUERIES, and its description, once its state is `want`.
fn wait_for_state(url: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = ksql(url, "SHOW QUERIES;");
        let state = shown[0]["queries"][0]["state"].as_str().map(str::to_string);
        if state.as_deref() == Some(want) {
            let described: Value = ksql(url, "DESCRIBE EXTENDED t;");
            return described.to_string();
        }
        assert!(Instant::now() < deadline, "never {want}: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn damaged_records_stop_the_query_with_their_offsets_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ksql(
        &server.url,
        "CREATE STREAM s (id STRING KEY, v STRING) WITH (kafka_topic='s', partitions=1, value_format='JSON');
         SET 'auto.offset.reset'='earliest';
         CREATE STREAM t AS SELECT id, UCASE(v) AS u FROM s;",
    );
    server.stop();

    // Five appends of 1,000 records, one batch each; then 8 bytes of the second go bad.
    let segment = dir.path().join("topics/s/0/00000000000000000000.log");
    let mut ends = Vec::new();
    for chunk in 0..5 {
        let lines: String = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| format!("k{i}|{{\"V\":\"value-{i}\"}}\n"))
            .collect();
        let out = eddy(
            dir.path(),
            &["produce", "--key-separator", "|", "s"],
            Some(&lines),
        );
        assert!(out.status.success(), "{out:?}");
        ends.push(std::fs::metadata(&segment).unwrap().len());
    }
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        f.write_all_at(&[0xde; 8], (ends[0] + ends[1]) / 2).unwrap();
    }

    let verify = eddy(dir.path(), &["topic", "verify", "s"], None);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(!verify.status.success());
    assert!(
        stdout.contains("partition 0: offsets 1000..2000 (1000 record(s)) damaged"),
        "{stdout}"
    );

    // The query reads up to the damage and stops there, saying why.
    let server = Server::start(dir.path(), &[]);
    let described = wait_for_state(&server.url, "ERROR");
    assert!(
        described.contains("records 1000..2000 of s/0 are damaged on disk"),
        "{described}"
    );
    server.stop();

    let refused = eddy(dir.path(), &["topic", "repair", "s"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--skip-damaged"));
    let repaired = eddy(
        dir.path(),
        &["topic", "repair", "s", "--skip-damaged"],
        None,
    );
    let stdout = String::from_utf8_lossy(&repaired.stdout);
    assert!(repaired.status.success(), "{repaired:?}");
    assert!(
        stdout.contains("Skipped: partition 0: offsets 1000..2000"),
        "{stdout}"
    );
    let verify = eddy(dir.path(), &["topic", "verify", "s"], None);
    assert!(verify.status.success(), "{verify:?}");

    // Restarted, the query goes on past the gap: every record but the lost ones reaches T.
    let server = Server::start(dir.path(), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = wait_for_state(&server.url, "RUNNING");
        if described.contains("lag per partition: 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query never caught up: {described}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let out = eddy(dir.path(), &["consume", "T", "--from-beginning"], None);
    assert!(out.status.success(), "{out:?}");
    let values = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        values.lines().count(),
        4000,
        "no record is lost but the damaged, none repeated"
    );
    assert!(values.contains("VALUE-999") && values.contains("VALUE-2000"));
    assert!(!values.contains("VALUE-1000\""));
}

/// The write-ahead log of the state database, where the last commits are.
fn state_wal(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn damaged_state_stops_eddy_with_the_way_to_rebuild_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ksql(
        &server.url,
        "CREATE STREAM s (id STRING KEY, v STRING) WITH (kafka_topic='s', partitions=1, value_format='JSON');
         SET 'auto.offset.reset'='earliest';
         CREATE TABLE c AS SELECT id, COUNT(*) AS n FROM s GROUP BY id;",
    );
    // Five commits, one per batch of inserts.
    for round in 1..=5u64 {
        let rows: Vec<Value> = (0..50)
            .map(|i| serde_json::json!({"ID": format!("k{i}"), "V": "x".repeat(100)}))
            .collect();
        support::insert(&server.url, "s", &rows);
        support::pull_until(&server.url, "SELECT * FROM c WHERE id = 'k0';", |rows| {
            rows.first().is_some_and(|r| r[1] == round)
        });
    }
    server.stop();

    let wal = state_wal(dir.path());
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"DAMAGED!");
    std::fs::write(&wal, bytes).unwrap();
    let out = eddy(dir.path(), &["-e", "SHOW QUERIES;"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("are damaged") && stderr.contains("Corruption"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuilt from their changelog topics"),
        "{stderr}"
    );

    // As advised: the stores come back from their changelogs, with every count.
    std::fs::rename(dir.path().join("state"), dir.path().join("state.damaged")).unwrap();
    let server = Server::start(dir.path(), &[]);
    let rows = support::pull_until(&server.url, "SELECT * FROM c;", |rows| rows.len() == 50);
    assert!(rows.iter().all(|r| r[1] == 5), "{rows:?}");
    server.stop();
}
