//! Eddy as a Kafka broker and a SQL engine at once, as a real process: a Kafka application
//! writes a topic, a query reads it, a Kafka consumer reads the query's output; and what a
//! producer had acknowledged is all there after a crash.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

mod support;

use support::{ksql, Server};

/// confluent-kafka is here (on CI it must be: `./dev setup` installs it).
fn have_confluent_kafka() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "confluent-kafka missing on CI"
        );
        eprintln!(
            "skipped: python module confluent_kafka is not installed (./dev setup installs it)"
        );
    }
    ok
}

fn script(args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka")
        .join(args[0]);
    let out = Command::new("python3")
        .arg(path)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        args[0],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_query_reads_what_kafka_producers_write_and_kafka_consumers_read_its_output() {
    if !have_confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--kafka-listen", "127.0.0.1:0"]);
    let kafka = server.kafka.clone().unwrap();
    let created = ksql(
        &server.url,
        "CREATE STREAM orders (id STRING KEY, item STRING, amount INT)
           WITH (kafka_topic='orders', partitions=2, value_format='JSON');
         CREATE STREAM big_orders AS SELECT id, item, amount * 10 AS cents FROM orders
           WHERE amount >= 4 EMIT CHANGES;",
    );
    assert_eq!(
        created[1]["commandStatus"]["status"], "SUCCESS",
        "{created}"
    );
    // Orders 0..20 have amount i % 6: those with 4 and 5 pass the filter.
    let out = script(&["sql_pipeline.py", &kafka, "6"]);
    let expected: String = [4, 5, 10, 11, 16, 17]
        .iter()
        .map(|i| {
            format!(
                "order-{i:02}\t{{\"ITEM\":\"item-{}\",\"CENTS\":{}}}\n",
                i % 4,
                (i % 6) * 10
            )
        })
        .collect();
    assert_eq!(out, expected);
    server.stop();
}

#[test]
fn what_a_producer_had_acknowledged_survives_kill_9() {
    if !have_confluent_kafka() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--kafka-default-partitions",
                "3",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("eddy kafka listener on ")
            .unwrap()
            .to_string();
        (child, addr, stdout)
    };
    let (mut broker, addr, _out) = start();
    // A producer writes on while the broker is killed; every key it saw acknowledged counts.
    let mut producer = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/acked.py"))
        .args(["produce", &addr, "events", "20000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        acked.push(line.unwrap().parse::<u32>().unwrap());
        if acked.len() == 3000 {
            broker.kill().unwrap();
            broker.wait().unwrap();
        }
    }
    producer.wait().unwrap();
    assert!(
        acked.len() >= 3000,
        "acknowledged before the kill: {}",
        acked.len()
    );
    let (mut broker, addr, _out) = start();
    let counted = script(&["acked.py", "count", &addr, "events"]);
    let mut counted = counted.lines();
    let totals: Vec<usize> = counted
        .next()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(totals[0], totals[1], "no record twice");
    let kept: std::collections::HashSet<u32> = counted
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|k| k.parse().unwrap())
        .collect();
    let lost: Vec<_> = acked.iter().filter(|k| !kept.contains(k)).collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    broker.kill().unwrap();
    broker.wait().unwrap();
}
