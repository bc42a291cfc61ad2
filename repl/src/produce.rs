//! `eddy produce TOPIC`: one record per line of standard input.
//!
//! Typed lines go out one by one, each acknowledged before the next is read, as a console
//! producer's do. Piped input is the bulk path and runs near the log's own rate: standard input
//! is read in large chunks, each line becomes a record whose key and value are slices of the
//! chunk (no copy, no allocation per line), records are appended per partition in batches of
//! [`BATCH_BYTES`] without waiting for each batch's fsync, and the producer waits for the group
//! commit only when [`IN_FLIGHT_BYTES`] are unacknowledged and once at the end. So the count it
//! prints is of records acknowledged under the topic's fsync policy, as before.

use std::io::{BufRead, IsTerminal, Read};

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use clap::Args;
use eddy_log::{now_ms, Log, Record, Topic};

use crate::progress::Progress;

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first occurrence of this into key and value; a line without it
    /// has a null key.
    #[arg(long)]
    key_separator: Option<String>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
}

/// Bytes read from piped standard input at a time.
const CHUNK: usize = 4 << 20;
/// A partition's records are appended once this many bytes of them are pending.
const BATCH_BYTES: usize = 256 << 10;
/// Bytes appended but not yet acknowledged, across partitions, before the producer waits for
/// the group commit: bounds what a crash of this process could leave unacknowledged.
const IN_FLIGHT_BYTES: usize = 32 << 20;

pub fn run(log: &Log, args: ProduceArgs) -> Result<()> {
    let topic = log.topic(&args.topic)?;
    if let Some(p) = args.partition {
        topic.partition(p)?;
    }
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    let stdin = std::io::stdin();
    let appended = if stdin.is_terminal() {
        typed(&topic, args.partition, sep, stdin.lock())?
    } else {
        piped(&topic, args.partition, sep, stdin.lock())?
    };
    println!("Appended {appended} record(s) to {}", args.topic);
    Ok(())
}

/// Typed lines: each is appended and acknowledged as soon as Enter is pressed.
fn typed(
    topic: &Topic,
    partition: Option<u32>,
    sep: Option<&[u8]>,
    input: impl BufRead,
) -> Result<u64> {
    let mut appended = 0;
    for line in input.split(b'\n') {
        let line = Bytes::from(line?);
        let record = to_record(&line, sep, now_ms());
        let p = partition.unwrap_or_else(|| topic.partition_for(record.key.as_deref()));
        appended += topic.partition(p)?.append(&[record])?.count;
    }
    Ok(appended)
}

/// What piped input has appended and what it still holds, per partition.
struct Batches<'a> {
    topic: &'a Topic,
    pending: Vec<Vec<Record>>,
    pending_bytes: Vec<usize>,
    /// Per partition, one past the last offset appended and not yet acknowledged.
    unacked: Vec<Option<u64>>,
    unacked_bytes: usize,
    appended: u64,
}

impl<'a> Batches<'a> {
    fn new(topic: &'a Topic) -> Batches<'a> {
        let n = topic.partition_count() as usize;
        Batches {
            topic,
            pending: (0..n).map(|_| Vec::new()).collect(),
            pending_bytes: vec![0; n],
            unacked: vec![None; n],
            unacked_bytes: 0,
            appended: 0,
        }
    }

    fn push(&mut self, p: u32, record: Record) -> Result<()> {
        let p = p as usize;
        self.pending_bytes[p] +=
            record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len);
        self.pending[p].push(record);
        if self.pending_bytes[p] >= BATCH_BYTES {
            self.append(p)?;
        }
        Ok(())
    }

    fn append(&mut self, p: usize) -> Result<()> {
        if self.pending[p].is_empty() {
            return Ok(());
        }
        let info = self
            .topic
            .partition(p as u32)?
            .append_unacknowledged(&self.pending[p])?;
        self.pending[p].clear();
        self.unacked[p] = Some(info.next_offset());
        self.unacked_bytes += std::mem::take(&mut self.pending_bytes[p]);
        self.appended += info.count;
        if self.unacked_bytes >= IN_FLIGHT_BYTES {
            self.acknowledge()?;
        }
        Ok(())
    }

    /// Waits until every record appended so far is acknowledged.
    fn acknowledge(&mut self) -> Result<()> {
        for (p, next) in self.unacked.iter_mut().enumerate() {
            if let Some(next) = next.take() {
                self.topic
                    .partition(p as u32)?
                    .wait_durable_blocking(next)?;
            }
        }
        self.unacked_bytes = 0;
        Ok(())
    }

    /// Appends what is pending and waits for all of it; returns the records appended.
    fn finish(mut self) -> Result<u64> {
        for p in 0..self.pending.len() {
            self.append(p)?;
        }
        self.acknowledge()?;
        Ok(self.appended)
    }
}

/// Piped input, in chunks: a line cut by a chunk's end is carried into the next chunk.
fn piped(
    topic: &Topic,
    partition: Option<u32>,
    sep: Option<&[u8]>,
    mut input: impl Read,
) -> Result<u64> {
    let mut batches = Batches::new(topic);
    let mut progress = Progress::new(format!("producing to {}", topic.name()));
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        // Make room for a chunk after the carried-over partial line.
        buf.reserve(CHUNK);
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let read = read_some(&mut input, &mut buf[start..])?;
        buf.truncate(start + read);
        let end = read == 0;
        // Everything up to the last newline is whole lines; at the end of input, all of it.
        let whole = if end {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf[start..]) {
                Some(i) => start + i + 1,
                None => continue,
            }
        };
        let lines = buf.split_to(whole).freeze();
        // One timestamp per chunk: a chunk is read in well under a millisecond's worth of work
        // per thousand lines, and the log's timestamps have millisecond resolution.
        let timestamp = now_ms();
        let mut at = 0;
        while at < lines.len() {
            let next = memchr::memchr(b'\n', &lines[at..]).map_or(lines.len(), |i| at + i);
            let record = to_record(&lines.slice(at..next), sep, timestamp);
            let p = partition.unwrap_or_else(|| topic.partition_for(record.key.as_deref()));
            batches.push(p, record)?;
            at = next + 1;
        }
        progress.update(batches.appended, "records", "");
        if end {
            break;
        }
    }
    drop(progress);
    batches.finish()
}

/// Reads until `buf` is full or the input ends, so chunks stay large on slow pipes.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A line (without its `\n`, and without a `\r` before it) as a record; key and value are
/// slices of `line`.
fn to_record(line: &Bytes, sep: Option<&[u8]>, timestamp: i64) -> Record {
    let line = match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line.clone(),
    };
    let split = sep.and_then(|s| memchr::memmem::find(&line, s).map(|i| (i, s.len())));
    let (key, value) = match split {
        Some((i, n)) => (Some(line.slice(..i)), line.slice(i + n..)),
        None => (None, line),
    };
    Record {
        key,
        value: Some(value),
        timestamp,
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_log::{LogOptions, ReadLimits, TopicConfig};

    #[test]
    fn piped_input_past_a_chunk_keeps_every_line_once_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let topic = log
            .create_topic("t", TopicConfig::with_partitions(3))
            .unwrap();
        // Lines of about 100 bytes, more than two chunks of them, CRLF and LF mixed, the last
        // without a newline.
        let lines = 2 * CHUNK / 100 + 1234;
        let mut input = Vec::new();
        for i in 0..lines {
            let end = if i % 2 == 0 { "\r\n" } else { "\n" };
            input.extend(format!("k{}:{i:0>90}{end}", i % 17).into_bytes());
        }
        input.pop();
        if input.last() == Some(&b'\r') {
            input.pop();
        }
        let appended = piped(&topic, None, Some(b":"), &input[..]).unwrap();
        assert_eq!(appended, lines as u64);
        let mut seen = vec![false; lines];
        for p in topic.partitions() {
            let mut offset = 0;
            while offset < p.end_offset() {
                for r in p.read(offset, ReadLimits::default()).unwrap() {
                    let value = std::str::from_utf8(r.record.value.as_deref().unwrap()).unwrap();
                    let i: usize = value.parse().unwrap();
                    let key = format!("k{}", i % 17);
                    assert_eq!(r.record.key.as_deref(), Some(key.as_bytes()));
                    assert_eq!(p.id(), topic.partition_for(Some(key.as_bytes())));
                    assert!(!seen[i], "line {i} twice");
                    seen[i] = true;
                    offset = r.offset + 1;
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "every line arrived");
    }

    #[test]
    fn a_line_splits_at_the_first_separator_and_loses_its_carriage_return() {
        let r = to_record(&Bytes::from_static(b"k1:a:b\r"), Some(b":"), 7);
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"a:b"[..]));
        assert_eq!(r.timestamp, 7);
        let r = to_record(&Bytes::from_static(b"no separator"), Some(b"::"), 7);
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"no separator"[..]));
    }
}
