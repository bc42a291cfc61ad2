//! `eddy bench log`: append and read throughput of the embedded log, beside the disk's own
//! sequential write bandwidth measured by `dd` in the same run.
//!
//! For each value size (100 B and 1 KiB) and fsync policy (never, group commit every 5 ms,
//! always), `--producers` threads append batches of about `--batch-bytes` to one partition,
//! each keeping up to `--in-flight` appends unacknowledged as a Kafka producer keeps requests in
//! flight, and the clock stops when the last append is acknowledged. Then one reader reads the
//! partition back from the page cache.
//! Build with `--release` for meaningful figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use eddy_log::{FsyncPolicy, Log, LogOptions, ReadLimits, Record, TopicConfig};

#[derive(Args)]
pub struct LogBenchArgs {
    /// Scratch directory (emptied and removed afterwards); it should be on the disk to measure.
    #[arg(long, default_value = "./eddy-bench")]
    dir: PathBuf,
    /// MiB of values to write per run.
    #[arg(long, default_value_t = 512)]
    mib: u64,
    /// Concurrent producers, each waiting for its own acknowledgements.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Bytes of values per append.
    #[arg(long, default_value_t = 256 << 10)]
    batch_bytes: usize,
    /// Appends each producer may have written but not yet acknowledged; 1 waits for each. The
    /// default, 32 appends of 256 KiB over 4 producers, is 32 MiB in flight: one Kafka
    /// producer's default `buffer.memory`.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Value sizes to measure, in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1024])]
    value_sizes: Vec<usize>,
    /// Fsync policies to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [FsyncPolicy::Never, FsyncPolicy::IntervalMs(5), FsyncPolicy::Always])]
    policies: Vec<FsyncPolicy>,
}

pub fn run(args: LogBenchArgs) -> Result<()> {
    if args.dir.exists() {
        bail!(
            "{} exists; give a new scratch directory with --dir",
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)?;
    let result = run_log_bench(&args);
    std::fs::remove_dir_all(&args.dir)?;
    result
}

fn run_log_bench(args: &LogBenchArgs) -> Result<()> {
    let disk = dd_write_mb_s(&args.dir, args.mib)?;
    println!(
        "disk: dd if=/dev/zero bs=1M count={} oflag=direct: {disk:.0} MB/s",
        args.mib
    );
    println!(
        "{:>6}  {:>8}  {:>12}  {:>10}  {:>10}  {:>8}  {:>12}  {:>10}",
        "value",
        "fsync",
        "append rec/s",
        "value MB/s",
        "log MB/s",
        "% disk",
        "read rec/s",
        "read MB/s"
    );
    for &value_size in &args.value_sizes {
        for &policy in &args.policies {
            let r = measure(args, value_size, policy)?;
            println!(
                "{:>6}  {:>8}  {:>12.0}  {:>10.1}  {:>10.1}  {:>7.0}%  {:>12.0}  {:>10.1}",
                value_size,
                policy.to_string(),
                r.append_records_s,
                r.append_value_mb_s,
                r.append_log_mb_s,
                100.0 * r.append_log_mb_s / disk,
                r.read_records_s,
                r.read_mb_s
            );
        }
    }
    Ok(())
}

struct Figures {
    append_records_s: f64,
    append_value_mb_s: f64,
    append_log_mb_s: f64,
    read_records_s: f64,
    read_mb_s: f64,
}

fn measure(args: &LogBenchArgs, value_size: usize, policy: FsyncPolicy) -> Result<Figures> {
    let dir = args.dir.join(format!("{value_size}-{policy}"));
    let log = Log::open(
        &dir,
        LogOptions {
            fsync: policy,
            ..LogOptions::default()
        },
    )?;
    let topic = log.create_topic(
        "bench",
        TopicConfig {
            segment_bytes: 1 << 30,
            ..TopicConfig::default()
        },
    )?;
    let partition = topic.partition(0)?.clone();
    let per_append = (args.batch_bytes / value_size).max(1);
    let total_records = (args.mib << 20) as usize / value_size;
    let appends_per_producer = total_records / per_append / args.producers;
    // Values are not all alike, so nothing downstream can shortcut them.
    let batch: Vec<Record> = (0..per_append)
        .map(|i| Record {
            key: Some(Bytes::from((i as u64).to_be_bytes().to_vec())),
            value: Some(Bytes::from(
                (0..value_size)
                    .map(|j| (i * 31 + j) as u8)
                    .collect::<Vec<u8>>(),
            )),
            timestamp: i as i64,
            headers: Vec::new(),
        })
        .collect();
    let in_flight = args.in_flight.max(1);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..args.producers)
            .map(|_| {
                let (partition, batch) = (&partition, &batch);
                s.spawn(move || -> Result<()> {
                    let mut pending = std::collections::VecDeque::new();
                    for _ in 0..appends_per_producer {
                        if pending.len() >= in_flight {
                            partition
                                .wait_durable_blocking(pending.pop_front().expect("not empty"))?;
                        }
                        pending.push_back(partition.append_unacknowledged(batch)?.next_offset());
                    }
                    if let Some(last) = pending.pop_back() {
                        partition.wait_durable_blocking(last)?;
                    }
                    Ok(())
                })
            })
            .collect();
        // This thread would only wait in `join`: it draws the records appended meanwhile.
        let mut progress =
            Progress::new(format!("bench log, {value_size} B values, fsync {policy}"));
        while !handles.iter().all(|h| h.is_finished()) {
            progress.update(partition.end_offset(), "records", "");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        progress.finish();
        for h in handles {
            h.join().expect("producer panicked")?;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    let records = (appends_per_producer * args.producers * per_append) as f64;
    let log_bytes = partition.size_bytes() as f64;

    let start = Instant::now();
    let mut offset = 0;
    let mut read = 0usize;
    let limits = ReadLimits {
        max_records: 1_000_000,
        max_bytes: 16 << 20,
    };
    loop {
        let got = partition.read(offset, limits)?;
        let Some(last) = got.last() else { break };
        offset = last.offset + 1;
        read += got.len();
    }
    let read_secs = start.elapsed().as_secs_f64();
    if read as f64 != records {
        bail!("read back {read} records, wrote {records}");
    }
    drop((partition, topic, log));
    std::fs::remove_dir_all(&dir)?;
    Ok(Figures {
        append_records_s: records / secs,
        append_value_mb_s: records * value_size as f64 / secs / 1e6,
        append_log_mb_s: log_bytes / secs / 1e6,
        read_records_s: records / read_secs,
        read_mb_s: log_bytes / read_secs / 1e6,
    })
}

/// Runs `dd` with direct I/O and returns its write rate in MB/s (10^6 bytes).
fn dd_write_mb_s(dir: &Path, mib: u64) -> Result<f64> {
    let target = dir.join("dd.tmp");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", &format!("count={mib}"), "oflag=direct"])
        .output()
        .context("running dd")?;
    std::fs::remove_file(&target).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "536870912 bytes (537 MB, 512 MiB) copied, 0.61 s, 880 MB/s"
    let line = stderr
        .lines()
        .find(|l| l.contains("copied"))
        .context("dd printed no summary")?;
    let bytes: f64 = line
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .context("dd bytes")?;
    let secs: f64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" s").and_then(|s| s.parse().ok()))
        .context("dd seconds")?;
    Ok(bytes / secs / 1e6)
}
