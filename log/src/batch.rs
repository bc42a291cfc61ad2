//! The on-disk record batch: the unit of writing, checksumming and recovery.
//!
//! A segment file is nothing but batches back to back. Each batch is
//!
//! ```text
//! base_offset  u64   offset of the first record
//! length       u32   length of the body
//! crc          u32   CRC32C of base_offset and the body
//! body:
//!   magic        u8    format version, 1
//!   attributes   u8    bit 0: written in a transaction; bits 1-3: the codec a Kafka producer
//!                      compressed the batch with; bit 4: timestamps set by the log at append
//!                      (see [`BatchFormat`]); other bits reserved, 0
//!   count        u32   number of records
//!   last_delta   u32   offset of the last record minus base_offset
//!   first_ts     i64   timestamp of the first record
//!   max_ts       i64   largest timestamp in the batch
//!   writer       u64   the transaction's writer (only with attribute bit 0)
//!   records...
//! ```
//!
//! all little-endian. A record is `offset_delta` (varint), `timestamp - first_ts` (zigzag
//! varint), key and value as a zigzag-varint length (-1 for null) then the bytes, and its
//! headers as a varint count of (name length, name, value length, value).
//!
//! Offsets inside a batch need not be consecutive: compaction drops records and keeps the
//! offsets of the survivors, so each record carries its own delta.
//!
//! A batch is written with one `pwrite`, so it is either whole on disk or torn at the tail; the
//! CRC tells the two apart on recovery, and catches corruption anywhere on read.

use bytes::{Buf, Bytes};

use crate::record::{Header, Record, StoredRecord};

/// Bytes before the body: base offset, length and CRC.
pub const HEADER_LEN: usize = 16;
/// Bytes of the body's fixed part.
pub(crate) const BODY_FIXED_LEN: usize = 1 + 1 + 4 + 4 + 8 + 8;
const MAGIC: u8 = 1;
/// The attribute bit of a batch written in a transaction (see `transaction.rs`).
const TRANSACTIONAL: u8 = 0x01;
/// Where the producer's codec sits in the attributes.
const CODEC_SHIFT: u8 = 1;
const CODEC_MASK: u8 = 0x07 << CODEC_SHIFT;
/// The attribute bit of a batch whose timestamps the log stamped at append.
const LOG_APPEND_TIME: u8 = 0x10;

/// The compression codec a Kafka producer used for a batch, numbered as in Kafka's batch
/// attributes. The log stores records uncompressed (its readers decode them in place); it keeps
/// the codec so that the Kafka listener can serve a batch compressed as it came in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// Kafka's number for the codec.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// The codec Kafka numbers `id`, if there is one.
    pub fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }
}

/// How a batch came to the log, beyond its records: kept per batch, as Kafka keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BatchFormat {
    /// The codec the producer compressed the batch with (none for Eddy's own writers).
    pub codec: Codec,
    /// The log set every timestamp to the time of the append (a topic whose
    /// `message.timestamp.type` is `LogAppendTime`), as opposed to the producer's event time.
    pub log_append_time: bool,
}

impl BatchFormat {
    fn attributes(self) -> u8 {
        (self.codec.id() << CODEC_SHIFT)
            | if self.log_append_time {
                LOG_APPEND_TIME
            } else {
                0
            }
    }

    fn from_attributes(attributes: u8) -> BatchFormat {
        BatchFormat {
            // An unknown codec number reads as none: the records are stored uncompressed anyway.
            codec: Codec::from_id((attributes & CODEC_MASK) >> CODEC_SHIFT).unwrap_or_default(),
            log_append_time: attributes & LOG_APPEND_TIME != 0,
        }
    }
}
/// A batch larger than this is taken to be corruption of the length field.
pub const MAX_BATCH_LEN: usize = 256 << 20;

/// What a batch's fixed fields say, read without decoding its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_offset: u64,
    /// Body length; the whole batch is `HEADER_LEN + body_len` bytes.
    pub body_len: u32,
    pub count: u32,
    pub last_offset_delta: u32,
    pub first_ts: i64,
    pub max_ts: i64,
    /// The writer of the transaction the batch was written in, if it was.
    pub writer: Option<u64>,
    pub format: BatchFormat,
}

impl BatchMeta {
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
    /// Where the records start, from the batch's first byte.
    fn records_start(&self) -> usize {
        HEADER_LEN + BODY_FIXED_LEN + if self.writer.is_some() { 8 } else { 0 }
    }
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }
    /// One past the last offset: where the next batch's offsets begin.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }
}

/// A batch read back whole, as the Kafka listener serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    /// The batch's last offset; its last record's, unless compaction removed that record.
    pub last_offset: u64,
    pub max_timestamp: i64,
    pub format: BatchFormat,
    pub records: Vec<StoredRecord>,
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The buffer ends inside the batch; `needed` is the whole batch's length, when known.
    Incomplete { needed: Option<usize> },
    /// The bytes are all there but wrong.
    Corrupt(String),
}

/// Encodes records into one batch appended to `buf`, returning its metadata; a transaction's
/// records carry its `writer`. With `format.log_append_time`, `stamp` replaces every record's
/// timestamp.
///
/// `records` yields (offset, record) with strictly increasing offsets. Returns `None` and leaves
/// `buf` as it was when there are no records.
pub fn encode<'a>(
    buf: &mut Vec<u8>,
    writer: Option<u64>,
    format: BatchFormat,
    stamp: i64,
    records: impl IntoIterator<Item = (u64, &'a Record)>,
) -> Option<BatchMeta> {
    let timestamp = |r: &Record| {
        if format.log_append_time {
            stamp
        } else {
            r.timestamp
        }
    };
    let mut records = records.into_iter().peekable();
    let (base_offset, first) = *records.peek()?;
    let first_ts = timestamp(first);
    let start = buf.len();
    let fixed = BODY_FIXED_LEN + if writer.is_some() { 8 } else { 0 };
    buf.resize(start + HEADER_LEN + fixed, 0);
    let mut count = 0u32;
    let mut max_ts = i64::MIN;
    let mut last_delta = 0u32;
    for (offset, record) in records {
        let delta =
            u32::try_from(offset - base_offset).expect("a batch spans less than 4G offsets");
        last_delta = delta;
        count += 1;
        max_ts = max_ts.max(timestamp(record));
        put_varint(buf, u64::from(delta));
        put_zigzag(buf, timestamp(record).wrapping_sub(first_ts));
        put_bytes(buf, record.key.as_deref());
        put_bytes(buf, record.value.as_deref());
        put_varint(buf, record.headers.len() as u64);
        for header in &record.headers {
            put_varint(buf, header.name.len() as u64);
            buf.extend_from_slice(header.name.as_bytes());
            put_bytes(buf, header.value.as_deref());
        }
    }
    let body_len = buf.len() - start - HEADER_LEN;
    let meta = BatchMeta {
        base_offset,
        body_len: u32::try_from(body_len).expect("batch body fits in u32"),
        count,
        last_offset_delta: last_delta,
        first_ts,
        max_ts,
        writer,
        format,
    };
    let b = &mut buf[start..];
    b[0..8].copy_from_slice(&base_offset.to_le_bytes());
    b[8..12].copy_from_slice(&meta.body_len.to_le_bytes());
    let body = &mut b[HEADER_LEN..];
    body[0] = MAGIC;
    body[1] = format.attributes() | if writer.is_some() { TRANSACTIONAL } else { 0 };
    if let Some(w) = writer {
        body[BODY_FIXED_LEN..BODY_FIXED_LEN + 8].copy_from_slice(&w.to_le_bytes());
    }
    body[2..6].copy_from_slice(&count.to_le_bytes());
    body[6..10].copy_from_slice(&last_delta.to_le_bytes());
    body[10..18].copy_from_slice(&first_ts.to_le_bytes());
    body[18..26].copy_from_slice(&max_ts.to_le_bytes());
    let crc = checksum(base_offset, body);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    Some(meta)
}

/// The batch checksum covers its base offset too, so a damaged offset cannot pass for another.
fn checksum(base_offset: u64, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&base_offset.to_le_bytes()), body)
}

/// Parses and verifies the batch at the start of `buf` (checks length bounds, magic and CRC).
pub fn parse(buf: &[u8]) -> Result<BatchMeta, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Incomplete { needed: None });
    }
    let base_offset = u64::from_le_bytes(buf[0..8].try_into().unwrap());
    let body_len = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    let crc = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    let body_len_usize = body_len as usize;
    if !(BODY_FIXED_LEN..=MAX_BATCH_LEN).contains(&body_len_usize) {
        return Err(BatchError::Corrupt(format!(
            "impossible batch length {body_len}"
        )));
    }
    let total = HEADER_LEN + body_len_usize;
    if buf.len() < total {
        return Err(BatchError::Incomplete {
            needed: Some(total),
        });
    }
    let body = &buf[HEADER_LEN..total];
    let actual = checksum(base_offset, body);
    if actual != crc {
        return Err(BatchError::Corrupt(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    if body[0] != MAGIC {
        return Err(BatchError::Corrupt(format!(
            "unknown batch format {}",
            body[0]
        )));
    }
    let writer = match body[1] & TRANSACTIONAL {
        0 => None,
        _ => match body.get(BODY_FIXED_LEN..BODY_FIXED_LEN + 8) {
            Some(w) => Some(u64::from_le_bytes(w.try_into().unwrap())),
            None => {
                return Err(BatchError::Corrupt(
                    "transactional batch without its writer".into(),
                ))
            }
        },
    };
    Ok(BatchMeta {
        base_offset,
        body_len,
        count: u32::from_le_bytes(body[2..6].try_into().unwrap()),
        last_offset_delta: u32::from_le_bytes(body[6..10].try_into().unwrap()),
        first_ts: i64::from_le_bytes(body[10..18].try_into().unwrap()),
        max_ts: i64::from_le_bytes(body[18..26].try_into().unwrap()),
        writer,
        format: BatchFormat::from_attributes(body[1]),
    })
}

/// Decodes the records of a verified batch. `batch` holds exactly the batch's bytes; keys, values
/// and header values are slices of it, so decoding allocates only the headers' vectors and names.
pub fn decode(batch: &Bytes, meta: &BatchMeta) -> Result<Vec<StoredRecord>, BatchError> {
    let mut out = Vec::with_capacity(meta.count as usize);
    decode_into(batch, meta, 0, &mut out)?;
    Ok(out)
}

/// Decodes the records of a verified batch whose offset is at least `min_offset` into `out`.
pub fn decode_into(
    batch: &Bytes,
    meta: &BatchMeta,
    min_offset: u64,
    out: &mut Vec<StoredRecord>,
) -> Result<(), BatchError> {
    let mut cur = batch.slice(meta.records_start()..meta.total_len());
    for _ in 0..meta.count {
        let delta = get_varint(&mut cur)?;
        let offset = meta.base_offset + delta;
        let timestamp = meta.first_ts.wrapping_add(get_zigzag(&mut cur)?);
        let key = get_bytes(&mut cur)?;
        let value = get_bytes(&mut cur)?;
        let header_count = get_varint(&mut cur)?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let name_len = get_varint(&mut cur)?;
            let len = get_len(&cur, name_len)?;
            let name = String::from_utf8(cur.split_to(len).to_vec())
                .map_err(|_| BatchError::Corrupt("header name is not UTF-8".into()))?;
            headers.push(Header {
                name,
                value: get_bytes(&mut cur)?,
            });
        }
        if offset >= min_offset {
            out.push(StoredRecord {
                offset,
                record: Record {
                    key,
                    value,
                    timestamp,
                    headers,
                },
            });
        }
    }
    if cur.has_remaining() {
        return Err(BatchError::Corrupt(
            "bytes left after the last record".into(),
        ));
    }
    Ok(())
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_zigzag(buf: &mut Vec<u8>, v: i64) {
    put_varint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_zigzag(buf, -1),
        Some(b) => {
            put_zigzag(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

fn truncated() -> BatchError {
    BatchError::Corrupt("record runs past the end of its batch".into())
}

fn get_varint(cur: &mut Bytes) -> Result<u64, BatchError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !cur.has_remaining() {
            return Err(truncated());
        }
        let b = cur.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BatchError::Corrupt("varint longer than 10 bytes".into()))
}

fn get_zigzag(cur: &mut Bytes) -> Result<i64, BatchError> {
    let v = get_varint(cur)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn get_len(cur: &Bytes, len: u64) -> Result<usize, BatchError> {
    usize::try_from(len)
        .ok()
        .filter(|&l| l <= cur.remaining())
        .ok_or_else(truncated)
}

fn get_bytes(cur: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    match get_zigzag(cur)? {
        -1 => Ok(None),
        n if n < 0 => Err(BatchError::Corrupt(format!("negative length {n}"))),
        n => {
            let len = get_len(cur, n as u64)?;
            Ok(Some(cur.split_to(len)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            arb_bytes(),
            arb_bytes(),
            any::<i64>(),
            proptest::collection::vec(("[a-z]{0,8}", arb_bytes()), 0..3),
        )
            .prop_map(|(key, value, timestamp, headers)| Record {
                key,
                value,
                timestamp,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary_records(
            base in 0u64..u64::MAX / 2,
            records in proptest::collection::vec((1u64..5, arb_record()), 1..40),
            writer in proptest::option::of(any::<u64>()),
            codec in 0u8..5,
            log_append_time in any::<bool>(),
        ) {
            let format = BatchFormat { codec: Codec::from_id(codec).unwrap(), log_append_time };
            let mut offset = base;
            let with_offsets: Vec<(u64, Record)> = records
                .into_iter()
                .map(|(gap, r)| { offset += gap; (offset, r) })
                .collect();
            let mut buf = vec![0xAA; 3];
            let with_offsets: Vec<(u64, Record)> = with_offsets
                .into_iter()
                .map(|(o, mut r)| { if log_append_time { r.timestamp = 42; } (o, r) })
                .collect();
            let meta = encode(&mut buf, writer, format, 42, with_offsets.iter().map(|(o, r)| (*o, r))).unwrap();
            prop_assert_eq!(buf.len(), 3 + meta.total_len());
            prop_assert_eq!(meta.writer, writer);
            prop_assert_eq!(meta.format, format);
            let bytes = Bytes::from(buf).slice(3..);
            prop_assert_eq!(parse(&bytes).unwrap(), meta);
            prop_assert_eq!(meta.last_offset(), with_offsets.last().unwrap().0);
            prop_assert_eq!(meta.max_ts, with_offsets.iter().map(|(_, r)| r.timestamp).max().unwrap());
            let decoded = decode(&bytes, &meta).unwrap();
            let expected: Vec<StoredRecord> = with_offsets
                .into_iter()
                .map(|(offset, record)| StoredRecord { offset, record })
                .collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn any_flipped_byte_is_detected(record in arb_record(), flip in any::<prop::sample::Index>(), bit in 0u8..8, writer in proptest::option::of(any::<u64>())) {
            let mut buf = Vec::new();
            let meta = encode(&mut buf, writer, BatchFormat::default(), 0, [(7u64, &record)]).unwrap();
            let i = flip.index(buf.len());
            buf[i] ^= 1 << bit;
            match parse(&buf) {
                Ok(m) => prop_assert!(false, "corruption at byte {} not detected: {:?} vs {:?}", i, m, meta),
                Err(BatchError::Corrupt(_)) | Err(BatchError::Incomplete { .. }) => {}
            }
        }

        #[test]
        fn every_truncation_is_incomplete(record in arb_record(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode(&mut buf, None, BatchFormat::default(), 0, [(0u64, &record)]).unwrap();
            let cut = cut.index(buf.len());
            let incomplete = matches!(parse(&buf[..cut]), Err(BatchError::Incomplete { .. }));
            prop_assert!(incomplete);
        }
    }

    #[test]
    fn empty_input_encodes_nothing() {
        let mut buf = Vec::new();
        assert!(encode(
            &mut buf,
            None,
            BatchFormat::default(),
            0,
            std::iter::empty()
        )
        .is_none());
        assert!(buf.is_empty());
    }
}
