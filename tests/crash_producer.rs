//! Kills a producer process with SIGKILL in the middle of its appends, again and again, and
//! checks after each crash that every acknowledged record reads back intact and that nothing
//! corrupt is returned.
//!
//! The producer is this same test binary, re-executed with `EDDY_CRASH_CHILD` set: it appends
//! batches under the `always` policy and prints the next offset after each acknowledgement.
//! Record contents are a function of their offset, so the parent can check every byte.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy::log::{FsyncPolicy, Log, LogOptions, ReadLimits, Record, TopicConfig};

const CHILD_ENV: &str = "EDDY_CRASH_CHILD";

fn value_for(offset: u64) -> Vec<u8> {
    let len = 20 + (offset % 200) as usize;
    (0..len).map(|i| (offset as usize * 7 + i) as u8).collect()
}

fn child(dir: &str) {
    let log = Log::open(dir, LogOptions::default()).unwrap();
    let topic = match log.topic("crash") {
        Ok(t) => t,
        Err(_) => log
            .create_topic(
                "crash",
                TopicConfig {
                    segment_bytes: 64 << 10,
                    fsync: Some(FsyncPolicy::Always),
                    ..TopicConfig::default()
                },
            )
            .unwrap(),
    };
    let p = topic.partition(0).unwrap();
    let mut next = p.end_offset();
    loop {
        let records: Vec<Record> = (next..next + 17)
            .map(|o| Record {
                key: Some(Bytes::from(o.to_be_bytes().to_vec())),
                value: Some(Bytes::from(value_for(o))),
                timestamp: o as i64,
                headers: Vec::new(),
            })
            .collect();
        let info = p.append(&records).unwrap();
        assert_eq!(info.base_offset, next);
        next = info.next_offset();
        println!("acked {next}");
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0u64;
    for round in 0..8u64 {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "acknowledged_records_survive_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        // Let it write for a while (a different while each round), then kill it mid-append.
        let until = Instant::now() + Duration::from_millis(150 + round * 37);
        let mut acks_this_round = 0;
        while Instant::now() < until || acks_this_round == 0 {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
                acks_this_round += 1;
            }
        }
        unsafe {
            libc::kill(proc.id() as i32, libc::SIGKILL);
        }
        proc.wait().unwrap();
        // Acknowledgements the child printed before dying also count.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
            }
        }
        assert!(
            acks_this_round > 0,
            "round {round}: the producer acknowledged nothing"
        );

        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let p = log.partition("crash", 0).unwrap();
        assert!(
            p.end_offset() >= acked,
            "round {round}: end {} < acknowledged {acked}",
            p.end_offset()
        );
        let mut offset = 0;
        while offset < p.end_offset() {
            let records = p
                .read(offset, ReadLimits::default())
                .unwrap_or_else(|e| panic!("round {round}: reading at {offset}: {e}"));
            for r in &records {
                assert_eq!(r.offset, offset, "round {round}: offsets are dense");
                assert_eq!(
                    r.record.value.as_deref(),
                    Some(&value_for(offset)[..]),
                    "offset {offset}"
                );
                offset += 1;
            }
        }
        assert!(
            p.segment_count() > 1 || round == 0,
            "the run spans several segments"
        );
    }
    assert!(
        acked > 1000,
        "only {acked} records were acknowledged in all"
    );
}
