//! `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`: a topic's records as text, with the
//! key and value formats guessed from the bytes, as ksqlDB's PRINT does.
//!
//! The guess is per record, from the most to the least specific reading: no bytes is `<null>`,
//! JSON text is JSON, other UTF-8 is a string, four or eight bytes that are not printable text
//! are a big-endian KAFKA integer, anything else is shown as hex bytes. The first record's
//! formats head the output.

use std::time::Duration;

use eddy_log::{ReadLimits, StoredRecord, Topic};

use super::{Outcome, Session};
use crate::ast::Print;
use crate::error::{invalid, Result};

/// A running PRINT. Dropping it ends it.
pub struct TopicPrint {
    topic: std::sync::Arc<Topic>,
    positions: Vec<u64>,
    /// Print every `interval`-th record.
    interval: u64,
    limit: Option<u64>,
    seen: u64,
    printed: u64,
    /// Whether the formats line was printed.
    headed: bool,
}

impl std::fmt::Debug for TopicPrint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicPrint")
            .field("topic", &self.topic.name())
            .field("limit", &self.limit)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guess {
    Null,
    Json,
    String,
    Int,
    BigInt,
    Bytes,
}

impl Guess {
    fn of(bytes: Option<&[u8]>) -> Guess {
        let Some(b) = bytes else {
            return Guess::Null;
        };
        match std::str::from_utf8(b) {
            Ok(text) if looks_like_json(text) => Guess::Json,
            Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
                Guess::String
            }
            _ => match b.len() {
                4 => Guess::Int,
                8 => Guess::BigInt,
                _ => Guess::Bytes,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Guess::Null => "¯\\_(ツ)_/¯ - no data processed",
            Guess::Json => "JSON or KAFKA_STRING",
            Guess::String => "KAFKA_STRING",
            Guess::Int => "KAFKA_INT",
            Guess::BigInt => "KAFKA_BIGINT or KAFKA_DOUBLE",
            Guess::Bytes => "BYTES",
        }
    }

    fn show(self, bytes: Option<&[u8]>) -> String {
        let Some(b) = bytes else {
            return "<null>".into();
        };
        match self {
            Guess::Null => "<null>".into(),
            Guess::Json | Guess::String => String::from_utf8_lossy(b).into_owned(),
            Guess::Int => i32::from_be_bytes(b.try_into().expect("4 bytes")).to_string(),
            Guess::BigInt => i64::from_be_bytes(b.try_into().expect("8 bytes")).to_string(),
            Guess::Bytes => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }
}

fn looks_like_json(text: &str) -> bool {
    let t = text.trim_start();
    (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(t).is_ok()
}

/// A record timestamp as ksqlDB's PRINT shows it: `2024/05/01 12:00:00.000 Z`.
fn rowtime_text(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y/%m/%d %H:%M:%S%.3f Z").to_string(),
        None => ms.to_string(),
    }
}

impl TopicPrint {
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// Whether the LIMIT was reached.
    pub fn is_done(&self) -> bool {
        self.limit.is_some_and(|l| self.printed >= l)
    }

    /// The lines for the records that arrived since the last call (first the formats, once);
    /// with nothing new, first waits up to `wait` for an append.
    pub fn poll(&mut self, wait: Duration) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let seen_activity = self.topic.activity();
        let mut read_any = false;
        for p in 0..self.positions.len() {
            if self.is_done() {
                break;
            }
            let partition = self.topic.partition(p as u32)?.clone();
            let start = partition.start_offset();
            if self.positions[p] < start {
                self.positions[p] = start;
            }
            let records = partition.read(self.positions[p], ReadLimits::default())?;
            if let Some(last) = records.last() {
                self.positions[p] = last.offset + 1;
                read_any = true;
            }
            for r in &records {
                self.seen += 1;
                if !(self.seen - 1).is_multiple_of(self.interval) || self.is_done() {
                    continue;
                }
                self.line(p as u32, r, &mut lines);
            }
        }
        if !read_any {
            self.topic.wait_for_activity_blocking(seen_activity, wait);
        }
        Ok(lines)
    }

    fn line(&mut self, partition: u32, r: &StoredRecord, lines: &mut Vec<String>) {
        let key = r.record.key.as_deref();
        let value = r.record.value.as_deref();
        let (kg, vg) = (Guess::of(key), Guess::of(value));
        if !self.headed {
            lines.push(format!("Key format: {}", kg.name()));
            lines.push(format!("Value format: {}", vg.name()));
            self.headed = true;
        }
        lines.push(format!(
            "rowtime: {}, key: {}, value: {}, partition: {partition}",
            rowtime_text(r.record.timestamp),
            kg.show(key),
            vg.show(value)
        ));
        self.printed += 1;
    }
}

impl Session {
    pub(super) fn print_topic(&mut self, print: &Print) -> Result<Outcome> {
        if self.runtime.is_none() {
            self.run_until_idle()?;
        }
        // ksqlDB takes the name as written, then as a source's name.
        let topic = match self.log.topic(&print.topic) {
            Ok(t) => t,
            Err(_) => match self
                .catalog
                .source(&print.topic.to_ascii_uppercase())
                .map(|s| self.log.topic(&s.topic))
            {
                Some(Ok(t)) => t,
                _ => {
                    return invalid(format!(
                        "Could not find topic '{}', or the KSQL user does not have permissions to list the topic. Topic names are case-sensitive.",
                        print.topic
                    ))
                }
            },
        };
        let positions = topic
            .partitions()
            .iter()
            .map(|p| {
                if print.from_beginning {
                    p.start_offset()
                } else {
                    p.end_offset()
                }
            })
            .collect();
        Ok(Outcome::Print(Box::new(TopicPrint {
            topic,
            positions,
            interval: print.interval.unwrap_or(1).max(1),
            limit: print.limit,
            seen: 0,
            printed: 0,
            headed: false,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_guessed_from_the_bytes() {
        assert_eq!(Guess::of(None), Guess::Null);
        assert_eq!(Guess::of(Some(br#"{"a":1}"#)), Guess::Json);
        assert_eq!(Guess::of(Some(b"{not json")), Guess::String);
        assert_eq!(Guess::of(Some(b"alice")), Guess::String);
        assert_eq!(Guess::of(Some(&7i32.to_be_bytes())), Guess::Int);
        assert_eq!(Guess::Int.show(Some(&7i32.to_be_bytes())), "7");
        assert_eq!(Guess::of(Some(&(-3i64).to_be_bytes())), Guess::BigInt);
        assert_eq!(Guess::BigInt.show(Some(&(-3i64).to_be_bytes())), "-3");
        assert_eq!(Guess::of(Some(&[0u8, 1, 255])), Guess::Bytes);
        assert_eq!(Guess::Bytes.show(Some(&[0u8, 1, 255])), "0001ff");
        assert_eq!(rowtime_text(0), "1970/01/01 00:00:00.000 Z");
    }
}
