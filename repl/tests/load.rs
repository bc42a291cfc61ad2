//! The server under load and abuse at once: 200 push queries streaming, clients inserting as
//! fast as they are acknowledged, and clients misbehaving (oversize, malformed, half-sent and
//! byte-by-byte requests, idle connections, requests without the token). Throughout,
//! `/healthcheck` keeps answering, and in the end every push query has received every row.
//!
//! The figures it prints (inserts per second, the slowest healthcheck) are what the closing
//! notes report; `EDDY_LOAD_SECONDS` lengthens the loaded phase (default 5) and
//! `EDDY_LOAD_PUSH_QUERIES` changes the number of push queries (default 200).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

mod support;

use support::{ksql_as, Server};

const TOKEN: &str = "load-test-token";
/// How many push queries stream throughout (`EDDY_LOAD_PUSH_QUERIES` changes it, to measure).
fn push_queries() -> usize {
    std::env::var("EDDY_LOAD_PUSH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A raw connection to the server's port, for requests no HTTP client would send.
fn raw(url: &str) -> TcpStream {
    let addr = url.strip_prefix("http://").unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// The status line's code of a raw request's answer.
fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn the_server_answers_under_load_and_abuse() {
    let seconds: u64 = std::env::var("EDDY_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--auth-token", TOKEN]);
    let url = server.url.clone();
    ksql_as(
        &url,
        "CREATE STREAM s (id STRING KEY, n BIGINT) WITH (kafka_topic='s', partitions=2, value_format='JSON');",
        Some(TOKEN),
    );

    // The healthcheck, polled throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let (mut slowest, mut polls) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let status = agent
                    .get(format!("{url}/healthcheck"))
                    .call()
                    .map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(200), "the healthcheck failed");
                slowest = slowest.max(start.elapsed());
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (polls, slowest)
        })
    };

    // 200 push queries, each counting the rows it receives.
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..push_queries()).map(|_| AtomicU64::new(0)).collect());
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let pushes: Vec<_> = (0..push_queries())
        .map(|i| {
            let (url, received, total) = (url.clone(), received.clone(), total.clone());
            std::thread::spawn(move || {
                let body = json!({"ksql": "SELECT * FROM s EMIT CHANGES;",
                                  "streamsProperties": {"auto.offset.reset": "earliest"}});
                // No timeout: the query streams until this client has seen every row.
                let push: ureq::Agent = ureq::Agent::config_builder().build().into();
                let response = push
                    .post(format!("{url}/query"))
                    .header("Authorization", &format!("Bearer {TOKEN}"))
                    .send(body.to_string())
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                let mut lines = BufReader::new(response.into_body().into_reader());
                let mut line = String::new();
                while received[i].load(Ordering::Relaxed) < total.load(Ordering::Relaxed) {
                    line.clear();
                    if lines.read_line(&mut line).unwrap() == 0 {
                        break;
                    }
                    if line.contains("\"row\"") {
                        received[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // Misbehaving clients, held open through the loaded phase.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(raw(&url)); // idle
    }
    for _ in 0..50 {
        // Half-sent: a body promised and never finished.
        let mut s = raw(&url);
        write!(
            s,
            "POST /ksql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"ksql\": \"SHOW"
        )
        .unwrap();
        held.push(s);
    }
    let slow = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            // A request a byte at a time, on 20 connections at once.
            let request = format!(
                "POST /ksql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 28\r\nConnection: close\r\n\r\n{{\"ksql\": \"SHOW STREAMS;\"}}\r\n"
            );
            let mut conns: Vec<TcpStream> = (0..20).map(|_| raw(&url)).collect();
            for byte in request.as_bytes() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for c in &mut conns {
                    c.write_all(&[*byte]).unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            conns
        })
    };
    let abuse = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let mut answered = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // An oversize body is refused on its length, before it is read.
                let mut oversize = raw(&url);
                write!(
                    oversize,
                    "POST /ksql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"ksql\": \"",
                    64 << 20
                )
                .unwrap();
                assert_eq!(status_of(&mut oversize), Some(413), "an oversize body");
                let malformed = agent
                    .post(format!("{url}/ksql"))
                    .header("Authorization", &format!("Bearer {TOKEN}"))
                    .send("{\"ksql\": ")
                    .map(|r| r.status().as_u16());
                assert_eq!(malformed.ok(), Some(400), "a malformed body");
                let no_token = agent
                    .post(format!("{url}/inserts-stream"))
                    .send("{\"target\": \"s\"}\n{\"id\": \"x\", \"n\": -1}")
                    .map(|r| r.status().as_u16());
                assert_eq!(no_token.ok(), Some(401), "an insert without the token");
                let mut garbage = raw(&url);
                garbage
                    .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
                    .unwrap();
                assert_eq!(status_of(&mut garbage), Some(400), "garbage");
                answered += 4;
            }
            answered
        })
    };

    // Inserts, as fast as they are acknowledged, from 4 clients.
    let inserted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let inserters: Vec<_> = (0..4)
        .map(|t| {
            let (url, inserted) = (url.clone(), inserted.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                while started.elapsed() < Duration::from_secs(seconds) {
                    let mut body = json!({"target": "s"}).to_string();
                    for i in 0..50 {
                        body.push('\n');
                        body.push_str(&json!({"id": format!("c{t}-{i}"), "n": n}).to_string());
                        n += 1;
                    }
                    let mut response = agent
                        .post(format!("{url}/inserts-stream"))
                        .header("Authorization", &format!("Bearer {TOKEN}"))
                        .send(body.as_str())
                        .unwrap();
                    let text = response.body_mut().read_to_string().unwrap();
                    let ok = text.lines().filter(|l| l.contains("\"ok\"")).count();
                    assert_eq!(ok, 50, "{text}");
                    inserted.fetch_add(50, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in inserters {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let rows = inserted.load(Ordering::Relaxed);
    total.store(rows, Ordering::Relaxed);

    // Every push query receives every row.
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.iter().any(|r| r.load(Ordering::Relaxed) < rows) {
        println!(
            "{rows} rows inserted; the push queries have between {:?} and {:?}",
            received.iter().map(|r| r.load(Ordering::Relaxed)).min(),
            received.iter().map(|r| r.load(Ordering::Relaxed)).max()
        );
        assert!(
            Instant::now() < deadline,
            "push queries behind: {:?}",
            received.iter().map(|r| r.load(Ordering::Relaxed)).min()
        );
        std::thread::sleep(Duration::from_millis(1000));
    }
    stop.store(true, Ordering::Relaxed);
    // A query that had all the rows before it knew how many to expect waits for another:
    // one last row ends them all.
    support::insert_as(&url, "s", &[json!({"id": "last", "n": -1})], Some(TOKEN));
    for p in pushes {
        p.join().unwrap();
    }
    let abusive = abuse.join().unwrap();
    let slow_conns = slow.join().unwrap();
    let (polls, slowest) = health.join().unwrap();
    drop((held, slow_conns));
    assert!(
        slowest < Duration::from_secs(2),
        "the healthcheck took {slowest:?}"
    );
    println!(
        "load: {rows} rows inserted in {:.1}s ({:.0}/s) by 4 clients while {} push queries \
         each received all of them; {abusive} abusive requests answered; {polls} healthchecks, the \
         slowest {:.0} ms",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        push_queries(),
        slowest.as_secs_f64() * 1000.0
    );
    server.stop();
}
