//! A full disk under a running server, on a small tmpfs: queries whose output cannot be
//! written pause and wait for space, show why, and go on once space returns, neither losing
//! nor repeating output; a producer gets the cause at once. Mounting needs root; without it
//! the test says so and passes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eddy_log::{Log, LogOptions};
use serde_json::{json, Value};

#[path = "../../log/tests/common/small_fs.rs"]
mod small_fs;
mod support;

use small_fs::SmallFs;
use support::{get, insert, ksql, pull_until, read_topic, Server};

const ROWS: u64 = 5000;
const KEYS: u64 = 40;

fn row(id: u64) -> Value {
    json!({"K": format!("k{}", id % KEYS), "ID": id, "PAD": "p".repeat(500)})
}

/// The values of `topic`'s readable records, as JSON.
fn values(log: &Log, topic: &str) -> Vec<Value> {
    read_topic(log, topic)
        .iter()
        .filter_map(|r| r.record.value.as_deref())
        .map(|v| serde_json::from_slice(v).unwrap())
        .collect()
}

/// The errors the server's tasks show (the web console's view of the queries).
fn task_errors(url: &str) -> Vec<String> {
    let (status, body) = get(url, "/console/api/state");
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    state["queries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["tasks"].as_array().unwrap().clone())
        .filter_map(|t| t["error"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn queries_wait_out_a_full_disk_and_go_on_without_loss_or_repeats() {
    let Some(fs) = SmallFs::mount(256 << 20) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let server = Server::start(&data, &[]);
    let url = server.url.clone();
    ksql(
        &url,
        "CREATE STREAM clicks (K STRING KEY, ID BIGINT, PAD STRING) WITH (kafka_topic='clicks', value_format='JSON', partitions=2);
         CREATE TABLE counts AS SELECT K, COUNT(*) AS N FROM clicks GROUP BY K;
         CREATE STREAM copy AS SELECT K, ID, PAD FROM clicks;
         PAUSE ALL;",
    );
    // COPY runs at least once (ksqlDB's default for a stateless query), where a restart from
    // its last commit would repeat output; COUNTS exactly once, with RocksDB state.
    // Input the paused queries have not read yet: when they resume, their output needs more
    // space than is left.
    for start in (0..ROWS).step_by(500) {
        let rows: Vec<Value> = (start..start + 500).map(row).collect();
        let acks = insert(&url, "CLICKS", &rows);
        assert!(acks.iter().all(|a| a["status"] == "ok"), "{acks:?}");
    }
    fs.fill("ballast", 64 << 10);
    let ballast = fs.path().join("ballast");
    ksql(&url, "RESUME ALL;");

    // The queries pause on the full disk and say why; the server keeps answering.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let errors = task_errors(&url);
        if let Some(e) = errors.iter().find(|e| e.contains("waiting for disk space")) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no query waits: {errors:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(waiting.contains("No space left on device"), "{waiting}");
    let (status, _) = get(&url, "/healthcheck");
    assert_eq!(status, 200);
    // A producer is told at once (rows that still fit in a page already allocated are
    // acknowledged: they are input like any other).
    let extra: Vec<Value> = (ROWS..ROWS + 200).map(row).collect();
    let acks = insert(&url, "CLICKS", &extra);
    let refused: Vec<&Value> = acks.iter().filter(|a| a["status"] == "error").collect();
    assert!(
        !refused.is_empty(),
        "the disk is full, yet every row was taken"
    );
    assert!(
        refused.iter().all(|a| a["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device")),
        "{refused:?}"
    );
    let mut acked: Vec<u64> = (0..ROWS).collect();
    acked.extend(
        acks.iter()
            .filter(|a| a["status"] == "ok")
            .map(|a| ROWS + a["seq"].as_u64().unwrap()),
    );
    // Still waiting, not failed.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        task_errors(&url)
            .iter()
            .all(|e| e.contains("waiting for disk space")),
        "{:?}",
        task_errors(&url)
    );

    // Space returns: everything goes on where it paused.
    std::fs::remove_file(&ballast).unwrap();
    pull_until(&url, "SELECT * FROM counts;", |rows| {
        rows.len() == KEYS as usize
            && rows.iter().map(|r| r[1].as_u64().unwrap()).sum::<u64>() == acked.len() as u64
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !task_errors(&url).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", task_errors(&url));
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();

    let log = Log::open(&data, LogOptions::default()).unwrap();
    for t in log.topics() {
        for p in t.partitions() {
            assert!(p.verify().unwrap().is_empty(), "{} is damaged", t.name());
        }
    }
    let mut input: Vec<u64> = values(&log, "clicks")
        .iter()
        .map(|v| v["ID"].as_u64().unwrap())
        .collect();
    input.sort_unstable();
    assert_eq!(
        input, acked,
        "the acknowledged rows are in, the refused ones not"
    );
    let mut copied: Vec<u64> = values(&log, "COPY")
        .iter()
        .map(|v| v["ID"].as_u64().unwrap())
        .collect();
    copied.sort_unstable();
    assert_eq!(copied, input, "each row copied once");
    // The table's last value per key, from its topic.
    let mut latest = BTreeMap::new();
    for r in read_topic(&log, "COUNTS") {
        let v: Value = serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
        latest.insert(r.record.key.clone(), v["N"].as_u64().unwrap());
    }
    let mut expected = BTreeMap::new();
    for id in &input {
        *expected.entry(format!("k{}", id % KEYS)).or_insert(0u64) += 1;
    }
    let latest: BTreeMap<String, u64> = latest
        .into_iter()
        .map(|(k, n)| (String::from_utf8(k.unwrap().to_vec()).unwrap(), n))
        .collect();
    assert_eq!(latest, expected);
    println!(
        "the queries waited for space ({waiting}) and caught up: {} rows, each once",
        input.len()
    );
}
