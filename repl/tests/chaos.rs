//! Chaos: a server runs four persistent queries while a client inserts over the REST API, and
//! is killed with SIGKILL at random moments, again and again.
//!
//! The server runs with `processing.guarantee=exactly_once_v2`. The queries: a windowed
//! aggregation, an aggregation grouped by a value column (through a
//! repartition topic), a stream-table join on a value column (repartitioned too) and a filtering
//! CSAS. The input topic has small segments, so kills also land during segment rolls.
//!
//! A second client keeps updating a compacted topic (10 keys) and appending to one with a
//! retention of 1.5 s, both with small segments, and the log's cleaner runs every 200 ms: kills
//! land during compaction and retention too. After every kill, each key's last acknowledged
//! value (or a later one) is still there, and the retained topic lost only a prefix.
//!
//! A Kafka producer (confluent-kafka, through the server's Kafka listener) writes the same
//! topic at the same time, a new one each round, killed with the server.
//!
//! After every kill (the server is down, so the test opens the data directory itself): every
//! row the server acknowledged, over REST or Kafka, is in the input topic exactly once, and no output holds any
//! input's effect twice. At the end, once the restarted server has caught up: each output equals
//! what a reference computes from the input topic, none missing, none repeated.
//!
//! CI runs 10 kills. The long run:
//! `EDDY_CHAOS_KILLS=100 cargo test -p eddy-cli --test chaos -- --nocapture`
//! (`EDDY_CHAOS_SEED=N` replays a run's kill times; the test prints its seed).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_log::{Log, LogOptions, StoredRecord};
use serde_json::{json, Value};

mod support;

use support::{ksql, pull_until, read_topic, Server};

const USERS: u64 = 20;
const KEYS: u64 = 50;

/// A small deterministic generator, so that a seed replays a run's kill times.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn click(id: u64) -> Value {
    json!({"K": format!("k{}", id % KEYS), "ID": id, "U": format!("u{}", id % USERS), "V": id % 100})
}

/// Inserts rows of increasing ids until the server goes away or `stop` is set; records which
/// ids were acknowledged. A row whose request failed is not sent again: it may or may not have
/// been appended, which the checks allow for.
fn produce(url: &str, next: &mut u64, acked: &Mutex<HashSet<u64>>, stop: &AtomicBool) {
    let agent = support::agent();
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<u64> = (*next..*next + 20).collect();
        *next += 20;
        let mut body = json!({"target": "clicks"}).to_string();
        for &id in &ids {
            body.push('\n');
            body.push_str(&click(id).to_string());
        }
        let Ok(mut response) = agent
            .post(&format!("{url}/inserts-stream"))
            .send(body.as_str())
        else {
            return;
        };
        let Ok(text) = response.body_mut().read_to_string() else {
            return;
        };
        for line in text.lines() {
            let Ok(ack) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if ack["status"] == "ok" {
                let seq = ack["seq"].as_u64().unwrap() as usize;
                acked.lock().unwrap().insert(ids[seq]);
            }
        }
    }
}

/// What the second client had acknowledged: each compacted key's highest value, and the ids
/// appended to the retained topic.
#[derive(Default)]
struct Churned {
    latest: HashMap<String, u64>,
    trail: BTreeSet<u64>,
}

/// Inserts into the compacted topic `kv` (`N` counts up, keys `k0`..`k9`) and the retained
/// topic `trail`, until the server goes away or `stop` is set.
fn churn(url: &str, next: &mut u64, acked: &Mutex<Churned>, stop: &AtomicBool) {
    let agent = support::agent();
    let send = |target: &str, rows: &[Value]| -> Option<Vec<bool>> {
        let mut body = json!({ "target": target }).to_string();
        for r in rows {
            body.push('\n');
            body.push_str(&r.to_string());
        }
        let mut response = agent
            .post(&format!("{url}/inserts-stream"))
            .send(body.as_str())
            .ok()?;
        let text = response.body_mut().read_to_string().ok()?;
        let mut ok = vec![false; rows.len()];
        for ack in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            if ack["status"] == "ok" {
                ok[ack["seq"].as_u64().unwrap() as usize] = true;
            }
        }
        Some(ok)
    };
    while !stop.load(Ordering::Relaxed) {
        let ns: Vec<u64> = (*next..*next + 20).collect();
        *next += 20;
        let kv: Vec<Value> = ns
            .iter()
            .map(|n| json!({"K": format!("k{}", n % 10), "N": n}))
            .collect();
        let Some(ok) = send("kv", &kv) else { return };
        {
            let mut acked = acked.lock().unwrap();
            for (n, _) in ns.iter().zip(ok).filter(|(_, ok)| *ok) {
                let latest = acked.latest.entry(format!("k{}", n % 10)).or_default();
                *latest = (*latest).max(*n);
            }
        }
        let trail: Vec<Value> = ns.iter().map(|n| json!({ "ID": n })).collect();
        let Some(ok) = send("trail", &trail) else {
            return;
        };
        let mut acked = acked.lock().unwrap();
        acked
            .trail
            .extend(ns.iter().zip(ok).filter(|(_, ok)| *ok).map(|(n, _)| *n));
    }
}

/// After a kill: compaction kept each key's last acknowledged value (or a later one), and
/// retention took only a prefix of the retained topic. Returns the records compaction kept and
/// the first id retention kept.
fn check_cleaned(log: &Log, acked: &Churned) -> (usize, u64) {
    let kv = read_topic(log, "kv");
    let mut latest: HashMap<String, u64> = HashMap::new();
    for r in &kv {
        let k = String::from_utf8_lossy(r.record.key.as_deref().unwrap()).into_owned();
        latest.insert(k, value(r)["N"].as_u64().unwrap());
    }
    for (k, n) in &acked.latest {
        let kept = latest.get(k).copied();
        assert!(
            kept.is_some_and(|kept| kept >= *n),
            "{k}: {n} acknowledged, {kept:?} kept"
        );
    }
    let trail: Vec<u64> = read_topic(log, "trail")
        .iter()
        .map(|r| value(r)["ID"].as_u64().unwrap())
        .collect();
    assert!(trail.windows(2).all(|w| w[0] < w[1]), "trail out of order");
    let first = trail.first().copied().unwrap_or(u64::MAX);
    let lost: Vec<_> = acked
        .trail
        .range(first..)
        .filter(|id| trail.binary_search(id).is_err())
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "retention took more than a prefix: {lost:?}"
    );
    for t in log.topics() {
        for p in t.partitions() {
            assert!(p.verify().unwrap().is_empty(), "{} is damaged", t.name());
        }
    }
    (kv.len(), first)
}

/// Whether confluent-kafka is here (on CI it must be: `./dev setup` installs it).
fn have_confluent_kafka() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "confluent-kafka missing on CI"
    );
    if !ok {
        eprintln!("no Kafka producer: python module confluent_kafka is not installed");
    }
    ok
}

/// Starts the Kafka producer on `kafka` with ids from `first`; a thread records the ids it
/// saw acknowledged until the producer is killed.
fn kafka_producer(
    kafka: &str,
    first: u64,
    acked: Arc<Mutex<HashSet<u64>>>,
) -> (std::process::Child, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/chaos_producer.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args([kafka, "clicks", &first.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(id) = line.map(|l| l.trim().parse::<u64>()) else {
                break;
            };
            acked.lock().unwrap().insert(id.unwrap());
        }
    });
    (child, reader)
}

fn value(r: &StoredRecord) -> Value {
    serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap()
}

/// Ids of a stream's records, checking that none is there twice.
fn ids_once(records: &[StoredRecord], what: &str) -> HashSet<u64> {
    let mut seen = HashSet::new();
    for r in records {
        let id = value(r)["ID"].as_u64().unwrap();
        assert!(seen.insert(id), "id {id} twice in {what}");
    }
    seen
}

/// An aggregation's output: each key's updates must count 1, 2, ... n with none repeated.
/// Returns each key's last (count, total).
fn last_updates(records: &[StoredRecord], what: &str) -> BTreeMap<Vec<u8>, (i64, i64)> {
    let mut by_key: BTreeMap<Vec<u8>, Vec<(i64, i64)>> = BTreeMap::new();
    for r in records {
        let v = value(r);
        by_key
            .entry(r.record.key.as_deref().unwrap().to_vec())
            .or_default()
            .push((v["N"].as_i64().unwrap(), v["TOTAL"].as_i64().unwrap()));
    }
    by_key
        .into_iter()
        .map(|(k, updates)| {
            let mut counts: Vec<i64> = updates.iter().map(|u| u.0).collect();
            counts.sort_unstable();
            counts.dedup();
            assert_eq!(
                counts.len(),
                updates.len(),
                "an update repeated in {what}: {updates:?}"
            );
            (k, *updates.iter().max().unwrap())
        })
        .collect()
}

/// The invariants that hold at any moment, whatever was killed when: acknowledged rows are in
/// the input once, no output repeats anything, and the cleaner lost nothing (`check_cleaned`).
/// Returns the input's rows, and what `check_cleaned` does.
fn check_after_kill(
    dir: &std::path::Path,
    acked: &HashSet<u64>,
    churned: &Churned,
) -> (usize, (usize, u64)) {
    let log = Log::open(dir, LogOptions::default()).unwrap();
    let input = ids_once(&read_topic(&log, "clicks"), "the input");
    let missing: Vec<_> = acked.difference(&input).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    ids_once(&read_topic(&log, "ENRICHED"), "ENRICHED");
    ids_once(&read_topic(&log, "BIG"), "BIG");
    last_updates(&read_topic(&log, "PER_MINUTE"), "PER_MINUTE");
    last_updates(&read_topic(&log, "PER_USER"), "PER_USER");
    (input.len(), check_cleaned(&log, churned))
}

#[test]
fn queries_stay_exactly_once_while_the_server_is_killed_again_and_again() {
    let kills: u64 = std::env::var("EDDY_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("EDDY_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("chaos: {kills} kills, EDDY_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // Exactly once for every query, the stateless CSAS included (ksqlDB's default for those
    // is at least once).
    let with_kafka = have_confluent_kafka();
    let mut config = vec![
        "--config",
        "commit.interval.ms=200",
        "--config",
        "processing.guarantee=exactly_once_v2",
        "--cleaner-interval-ms",
        "200",
    ];
    if with_kafka {
        config.extend(["--kafka-listen", "127.0.0.1:0"]);
    }

    // Small segments: kills land during rolls too.
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["topic", "create", "clicks", "--partitions", "2"])
        .args(["--segment-bytes", "65536"])
        .status()
        .unwrap();
    assert!(created.success());
    // One partition for the retained topic: its ids then grow with its offsets.
    for args in [
        ["kv", "--compact", "--partitions=2"],
        ["trail", "--retention-ms=1500", "--partitions=1"],
    ] {
        let created = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["topic", "create"])
            .args(args)
            .args(["--segment-bytes", "4096"])
            .status()
            .unwrap();
        assert!(created.success());
    }
    let server = Server::start(dir.path(), &config);
    ksql(
        &server.url,
        "CREATE STREAM clicks (k STRING KEY, id BIGINT, u STRING, v BIGINT) WITH (kafka_topic='clicks', value_format='JSON');
         CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', partitions=2, value_format='JSON');
         CREATE STREAM kv (k STRING KEY, n BIGINT) WITH (kafka_topic='kv', value_format='JSON');
         CREATE STREAM trail (id BIGINT) WITH (kafka_topic='trail', value_format='JSON');",
    );
    let users: Vec<Value> = (0..USERS)
        .map(|u| json!({"ID": format!("u{u}"), "NAME": format!("name-u{u}")}))
        .collect();
    let acks = support::insert(&server.url, "users", &users);
    assert!(acks.iter().all(|a| a["status"] == "ok"), "{acks:?}");
    let created = ksql(
        &server.url,
        "SET 'auto.offset.reset'='earliest';
         CREATE TABLE per_minute AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM clicks WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY k;
         CREATE TABLE per_user AS SELECT u, COUNT(*) AS n, SUM(v) AS total FROM clicks GROUP BY u;
         CREATE STREAM enriched AS SELECT c.u AS u, c.id AS id, c.v AS v, users.name AS name FROM clicks c JOIN users ON c.u = users.id;
         CREATE STREAM big AS SELECT k, id, v FROM clicks WHERE v >= 50;",
    );
    for c in created.as_array().unwrap().iter().skip(1) {
        assert_eq!(c["commandStatus"]["status"], "SUCCESS", "{created}");
    }
    drop(server);

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let churned = Arc::new(Mutex::new(Churned::default()));
    let (mut next, mut next_churn) = (0u64, 0u64);
    for kill in 0..kills {
        let mut server = Server::start(dir.path(), &config);
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (url, acked, stop) = (server.url.clone(), acked.clone(), stop.clone());
            let mut from = next;
            std::thread::spawn(move || {
                produce(&url, &mut from, &acked, &stop);
                from
            })
        };
        let churner = {
            let (url, churned, stop) = (server.url.clone(), churned.clone(), stop.clone());
            let mut from = next_churn;
            std::thread::spawn(move || {
                churn(&url, &mut from, &churned, &stop);
                from
            })
        };
        let kafka = server.kafka.clone().map(|addr| {
            // Ids of their own: a billion apart from the REST client's, a million per round.
            kafka_producer(&addr, 1_000_000_000 + kill * 1_000_000, acked.clone())
        });
        std::thread::sleep(Duration::from_millis(200 + rng.below(2300)));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        next = producer.join().unwrap();
        next_churn = churner.join().unwrap();
        if let Some((mut child, reader)) = kafka {
            // What it had not seen acknowledged by now is given up, as a crashed client's.
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap();
        }
        let churned = churned.lock().unwrap();
        let (input, (kv_kept, trail_first)) =
            check_after_kill(dir.path(), &acked.lock().unwrap(), &churned);
        let acked = acked.lock().unwrap();
        let over_kafka = acked.iter().filter(|&&id| id >= 1_000_000_000).count();
        println!(
            "kill {}: {} rows in the input, {} acknowledged ({} over Kafka); kv: {} keys' \
             latest kept, {} records left of {} sent; trail: {} acknowledged, kept from id {}",
            kill + 1,
            input,
            acked.len(),
            over_kafka,
            churned.latest.len(),
            kv_kept,
            next_churn,
            churned.trail.len(),
            trail_first
        );
    }

    // The reference, from the input as it ended up.
    let (clicks, by_window, by_user) = {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let clicks = read_topic(&log, "clicks");
        let mut by_window: HashMap<(String, i64), (i64, i64)> = HashMap::new();
        let mut by_user: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in &clicks {
            let v = value(r);
            let k = String::from_utf8_lossy(r.record.key.as_deref().unwrap()).into_owned();
            let (u, n) = (
                v["U"].as_str().unwrap().to_string(),
                v["V"].as_i64().unwrap(),
            );
            let w = by_window
                .entry((k, r.record.timestamp / 60_000 * 60_000))
                .or_default();
            *w = (w.0 + 1, w.1 + n);
            let g = by_user.entry(u).or_default();
            *g = (g.0 + 1, g.1 + n);
        }
        (clicks, by_window, by_user)
    };
    assert!(!clicks.is_empty());

    // Restarted and left alone, the server catches up; the tables then match the reference.
    let server = Server::start(dir.path(), &config);
    let expected_users: Vec<Value> = by_user
        .iter()
        .map(|(u, (n, total))| json!([u, n, total]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = pull_until(&server.url, "SELECT u, n, total FROM per_user;", |_| true);
        let mut got: Vec<Value> = rows.to_vec();
        got.sort_by_key(|r| r[0].as_str().unwrap_or_default().to_string());
        if got == expected_users {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PER_USER never caught up: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    loop {
        let caught_up = ["PER_MINUTE", "ENRICHED", "BIG"].iter().all(|sink| {
            let described = ksql(&server.url, &format!("DESCRIBE EXTENDED {sink};")).to_string();
            described.contains("lag per partition: 0 ")
        });
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "the queries never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let input: HashSet<u64> = ids_once(&clicks, "the input");
    let enriched = read_topic(&log, "ENRICHED");
    assert_eq!(
        ids_once(&enriched, "ENRICHED"),
        input,
        "every click joined once"
    );
    for r in &enriched {
        // The join's key is the user.
        let u = String::from_utf8_lossy(r.record.key.as_deref().unwrap()).into_owned();
        assert_eq!(value(r)["NAME"], json!(format!("name-{u}")));
    }
    let big: HashSet<u64> = clicks
        .iter()
        .map(value)
        .filter(|v| v["V"].as_i64().unwrap() >= 50)
        .map(|v| v["ID"].as_u64().unwrap())
        .collect();
    assert_eq!(ids_once(&read_topic(&log, "BIG"), "BIG"), big);
    let mut windows: Vec<(i64, i64)> = last_updates(&read_topic(&log, "PER_MINUTE"), "PER_MINUTE")
        .into_values()
        .collect();
    let mut expected_windows: Vec<(i64, i64)> = by_window.into_values().collect();
    windows.sort_unstable();
    expected_windows.sort_unstable();
    assert_eq!(
        windows, expected_windows,
        "every window's last count and sum"
    );
    let mut users: Vec<(i64, i64)> = last_updates(&read_topic(&log, "PER_USER"), "PER_USER")
        .into_values()
        .collect();
    let mut expected: Vec<(i64, i64)> = by_user.into_values().collect();
    users.sort_unstable();
    expected.sort_unstable();
    assert_eq!(users, expected, "every user's last count and sum");
    println!(
        "chaos: {kills} kills, {} rows in, {} acknowledged, outputs exact",
        clicks.len(),
        acked.lock().unwrap().len()
    );
}
