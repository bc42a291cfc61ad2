//! Kafka clients nobody here wrote, against a broker on a loopback port: confluent-kafka
//! (librdkafka), kafka-python (pure Python) and kcat. `./dev setup` installs them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{have, have_python_module, run_script, TestBroker};

#[test]
fn confluent_kafka_admin_produce_and_consume() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let b = TestBroker::start();
    let out = run_script("confluent_roundtrip.py", &b.bootstrap(), &[]);
    assert!(out.starts_with("ok 2000"), "{out}");
    // What the clients wrote is in the log as records Eddy reads directly.
    let topic = b.log.topic("rt").unwrap();
    assert_eq!(topic.message_count(), 2000);
}

#[test]
fn confluent_kafka_group_rebalances_and_resumes() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let b = TestBroker::start();
    run_script("confluent_group.py", &b.bootstrap(), &[]);
    // The group's commits are the log's: Eddy's own consumers resume from them too.
    let tp = eddy_log::TopicPartition::new("grouped", 2);
    assert_eq!(b.log.committed_offset("pair", &tp), Some(120));
}

#[test]
fn kafka_python_produce_group_and_commit() {
    if !have_python_module("kafka") {
        return;
    }
    let b = TestBroker::start();
    run_script("kafka_python.py", &b.bootstrap(), &[]);
}

#[test]
fn kcat_metadata_produce_and_consume() {
    if !have("kcat", Command::new("kcat").arg("-V")) {
        return;
    }
    let b = TestBroker::start();
    let bootstrap = b.bootstrap();
    let mut produce = Command::new("kcat")
        .args([
            "-b", &bootstrap, "-t", "lines", "-P", "-K", ":", "-z", "snappy",
        ])
        .args(["-H", "source=kcat", "-H", "source=again"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(b"k1:first line\nk2:second line\n:keyless\n")
        .unwrap();
    assert!(produce.wait().unwrap().success());
    let out = Command::new("kcat")
        .args(["-b", &bootstrap, "-t", "lines", "-C", "-e", "-q"])
        .args(["-f", "%o|%k|%s|%h\n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0|k1|first line|source=kcat,source=again\n\
         1|k2|second line|source=kcat,source=again\n\
         2||keyless|source=kcat,source=again\n"
    );
    let metadata = Command::new("kcat")
        .args(["-b", &bootstrap, "-L", "-t", "lines"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&metadata.stdout);
    assert!(
        listing.contains("topic \"lines\" with 1 partitions"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("broker 0 at {bootstrap}")),
        "{listing}"
    );
}

#[test]
fn the_rdkafka_crate_produces_and_consumes_in_a_group() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;
    use std::time::{Duration, Instant};

    let b = TestBroker::start();
    let config = |extra: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", b.bootstrap());
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c
    };
    let producer: BaseProducer =
        config(&[("enable.idempotence", "true"), ("compression.type", "lz4")])
            .create()
            .unwrap();
    for i in 0..100 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_string()),
        });
        producer
            .send(
                BaseRecord::to("from-rust")
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(20)).unwrap();
    let consumer: BaseConsumer = config(&[
        ("group.id", "rust"),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
    ])
    .create()
    .unwrap();
    consumer.subscribe(&["from-rust"]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 100 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let n = m
                .headers()
                .unwrap()
                .get(0)
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned());
            got.push((
                String::from_utf8_lossy(m.key().unwrap()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                n,
            ));
        }
    }
    assert_eq!(got.len(), 100);
    assert_eq!(
        got[42],
        (
            "key-42".to_string(),
            "value-42".to_string(),
            Some("42".to_string())
        )
    );
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let tp = eddy_log::TopicPartition::new("from-rust", 0);
    assert_eq!(b.log.committed_offset("rust", &tp), Some(100));
}
