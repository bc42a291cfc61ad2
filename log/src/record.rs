//! Records as producers write them and consumers read them.

use bytes::Bytes;

/// One record: what a producer appends.
///
/// A `None` value is a tombstone: in a compacted topic it deletes its key. Timestamps are
/// milliseconds since the Unix epoch, chosen by the producer (event time), never rewritten by
/// the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<Header>,
}

/// A record header: a name and optional bytes, as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

/// A record read back from a partition, with the offset the log gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: Record,
}

impl Record {
    /// A record with a key and a value and no headers.
    pub fn new(
        key: Option<impl Into<Bytes>>,
        value: Option<impl Into<Bytes>>,
        timestamp: i64,
    ) -> Self {
        Record {
            key: key.map(Into::into),
            value: value.map(Into::into),
            timestamp,
            headers: Vec::new(),
        }
    }

    /// Bytes this record takes in a batch, roughly: used for sizing batches and read limits.
    pub fn approx_size(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        16 + len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|h| 8 + h.name.len() + len(&h.value))
                .sum::<usize>()
    }
}

/// Wall-clock milliseconds since the Unix epoch: the timestamp a record gets when its producer
/// has no event time of its own.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
