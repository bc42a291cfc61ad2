//! Kafka's record batch (format v2, "magic 2") to and from the log's records.
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 = 2 | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! ```
//!
//! The CRC-32C covers everything from `attributes` to the end. Attribute bits: 0-2 codec,
//! 3 timestamp type (LogAppendTime), 4 transactional, 5 control. The records, compressed as one
//! block when the codec is not none, are each a varint length, an attribute byte, varint deltas
//! of timestamp and offset, key, value and headers with varint lengths (-1 for null).
//!
//! Why not `kafka_protocol::records`: its `Record` keeps headers in a map, so two headers with
//! one name (which Kafka allows) would collapse into one, it never writes LogAppendTime, and it
//! allocates a map per record. The compression itself is the crate's.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use eddy_log::{Codec, Header, Record, StoredBatch};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

/// Bytes of a batch before its records.
pub const BATCH_HEADER_LEN: usize = 61;
/// Where `batchLength` counts from: after `baseOffset` and itself.
const LENGTH_FIELD_END: usize = 12;
/// Where the CRC's coverage starts.
const CRC_START: usize = 21;

const CODEC_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// Why produced bytes are not a valid batch: Kafka answers CORRUPT_MESSAGE or INVALID_RECORD.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("invalid record batch: {0}")]
    Invalid(String),
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(i16),
}

/// One batch as a producer sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducedBatch {
    pub codec: Codec,
    pub transactional: bool,
    pub control: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Bytes the batch took on the wire.
    pub size: usize,
    pub records: Vec<Record>,
}

impl ProducedBatch {
    /// The sequence number of the batch's last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        let n = self.records.len().saturating_sub(1) as i64;
        ((i64::from(self.base_sequence) + n) % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn corrupt(why: impl Into<String>) -> BatchError {
    BatchError::Corrupt(why.into())
}

/// Splits a produce request's `records` into its batches, verifying each one's CRC and
/// decoding (and decompressing) its records. Keys, values and header values of uncompressed
/// batches are slices of `bytes`.
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut batches = Vec::new();
    while bytes.has_remaining() {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(corrupt("truncated batch header"));
        }
        let length = i32::from_be_bytes(bytes[8..12].try_into().unwrap());
        let total = usize::try_from(length)
            .ok()
            .map(|l| l + LENGTH_FIELD_END)
            .filter(|&t| (BATCH_HEADER_LEN..=bytes.len()).contains(&t))
            .ok_or_else(|| corrupt(format!("batch length {length} does not fit")))?;
        let batch = bytes.split_to(total);
        batches.push(decode_batch(batch)?);
    }
    Ok(batches)
}

fn decode_batch(batch: Bytes) -> Result<ProducedBatch, BatchError> {
    let size = batch.len();
    let magic = batch[16];
    if magic != 2 {
        return Err(BatchError::Invalid(format!(
            "message format v{magic} is not supported (only v2)"
        )));
    }
    let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if stored != computed {
        return Err(corrupt(format!(
            "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let mut h = &batch[CRC_START..BATCH_HEADER_LEN];
    let attributes = h.get_i16();
    let _last_offset_delta = h.get_i32();
    let base_timestamp = h.get_i64();
    let _max_timestamp = h.get_i64();
    let producer_id = h.get_i64();
    let producer_epoch = h.get_i16();
    let base_sequence = h.get_i32();
    let count = h.get_i32();
    let codec_id = attributes & CODEC_MASK;
    let codec = Codec::from_id(codec_id as u8).ok_or(BatchError::UnsupportedCodec(codec_id))?;
    let payload = batch.slice(BATCH_HEADER_LEN..);
    let mut body = decompress(codec, payload)?;
    let count = usize::try_from(count).map_err(|_| corrupt("negative record count"))?;
    // Each record takes at least 7 bytes; a count beyond that is a lie, not a reason to
    // reserve gigabytes.
    let mut records = Vec::with_capacity(count.min(body.len() / 7 + 1));
    for i in 0..count {
        let (offset_delta, record) = decode_record(&mut body, base_timestamp)?;
        if offset_delta != i as i64 {
            return Err(BatchError::Invalid(format!(
                "record {i} has offset delta {offset_delta}; a producer's deltas count from 0"
            )));
        }
        records.push(record);
    }
    if body.has_remaining() {
        return Err(corrupt("bytes left after the last record"));
    }
    Ok(ProducedBatch {
        codec,
        transactional: attributes & TRANSACTIONAL != 0,
        control: attributes & CONTROL != 0,
        producer_id,
        producer_epoch,
        base_sequence,
        size,
        records,
    })
}

fn decode_record(body: &mut Bytes, base_timestamp: i64) -> Result<(i64, Record), BatchError> {
    let length = get_varint(body)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&l| l <= body.len())
        .ok_or_else(|| corrupt("record runs past its batch"))?;
    let mut r = body.split_to(length);
    if !r.has_remaining() {
        return Err(corrupt("empty record"));
    }
    let _attributes = r.get_i8();
    let timestamp = base_timestamp.wrapping_add(get_varint(&mut r)?);
    let offset_delta = get_varint(&mut r)?;
    let key = get_bytes(&mut r)?;
    let value = get_bytes(&mut r)?;
    let header_count = get_varint(&mut r)?;
    let header_count = usize::try_from(header_count)
        .ok()
        .filter(|&n| n <= r.len())
        .ok_or_else(|| corrupt("impossible header count"))?;
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let name = get_bytes(&mut r)?.ok_or_else(|| corrupt("null header name"))?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| BatchError::Invalid("header name is not UTF-8".into()))?;
        headers.push(Header {
            name,
            value: get_bytes(&mut r)?,
        });
    }
    if r.has_remaining() {
        return Err(corrupt("bytes left inside a record"));
    }
    let record = Record {
        key,
        value,
        timestamp,
        headers,
    };
    Ok((offset_delta, record))
}

fn decompress(codec: Codec, mut payload: Bytes) -> Result<Bytes, BatchError> {
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let out = match codec {
        Codec::None => return Ok(payload),
        Codec::Gzip => Gzip::decompress(&mut payload, take),
        Codec::Snappy => Snappy::decompress(&mut payload, take),
        Codec::Lz4 => Lz4::decompress(&mut payload, take),
        Codec::Zstd => Zstd::decompress(&mut payload, take),
    };
    out.map_err(|e| corrupt(format!("cannot decompress {codec:?} records: {e:#}")))
}

/// Appends `batch` to `out` as one Kafka batch, compressed with `codec`. Its records keep their
/// offsets (gaps left by compaction included) and timestamps.
pub fn encode_batch(out: &mut BytesMut, batch: &StoredBatch, codec: Codec) {
    let base = batch.base_offset;
    let base_ts = batch
        .records
        .first()
        .map_or(batch.max_timestamp, |r| r.record.timestamp);
    let max_ts = batch
        .records
        .iter()
        .map(|r| r.record.timestamp)
        .max()
        .unwrap_or(batch.max_timestamp);
    let mut attributes = codec.id() as i16;
    if batch.format.log_append_time {
        attributes |= LOG_APPEND_TIME;
    }
    let header = BatchHeader {
        base_offset: base as i64,
        last_offset_delta: (batch.last_offset - base) as i32,
        attributes,
        base_timestamp: base_ts,
        max_timestamp: max_ts,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        count: batch.records.len() as i32,
    };
    let write_records = |buf: &mut BytesMut| {
        let mut scratch = BytesMut::new();
        for r in &batch.records {
            put_record(
                buf,
                &mut scratch,
                (r.offset - base) as i64,
                base_ts,
                &r.record,
            );
        }
    };
    header.write(out, codec, write_records);
}

/// A control batch with one ABORT marker at `offset`: what a Kafka broker leaves where a
/// transaction aborted. Fetch serves it when only aborted records lie between a consumer's
/// position and the end, so that the consumer moves past them (it skips control records).
pub fn encode_abort_marker(out: &mut BytesMut, offset: u64, timestamp: i64) {
    let header = BatchHeader {
        base_offset: offset as i64,
        last_offset_delta: 0,
        attributes: TRANSACTIONAL | CONTROL,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: i64::MAX,
        producer_epoch: 0,
        base_sequence: -1,
        count: 1,
    };
    header.write(out, Codec::None, |buf| {
        // Key: control record version 0, type 0 (ABORT); value: version 0, coordinator epoch 0.
        let marker = Record {
            key: Some(Bytes::from_static(&[0, 0, 0, 0])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            timestamp,
            headers: Vec::new(),
        };
        put_record(buf, &mut BytesMut::new(), 0, timestamp, &marker);
    });
}

struct BatchHeader {
    base_offset: i64,
    last_offset_delta: i32,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    count: i32,
}

impl BatchHeader {
    fn write(&self, out: &mut BytesMut, codec: Codec, records: impl FnOnce(&mut BytesMut)) {
        let start = out.len();
        out.put_i64(self.base_offset);
        out.put_i32(0); // batchLength, patched below
        out.put_i32(0); // partitionLeaderEpoch: the log has one leader, forever
        out.put_i8(2);
        out.put_u32(0); // crc, patched below
        out.put_i16(self.attributes);
        out.put_i32(self.last_offset_delta);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.count);
        if codec == Codec::None {
            records(out);
        } else {
            let mut raw = BytesMut::new();
            records(&mut raw);
            compress(codec, &raw, out);
        }
        let length = (out.len() - start - LENGTH_FIELD_END) as i32;
        out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&out[start + CRC_START..]);
        out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    }
}

fn compress(codec: Codec, raw: &[u8], out: &mut BytesMut) {
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let done = match codec {
        Codec::None => {
            out.extend_from_slice(raw);
            Ok(())
        }
        Codec::Gzip => Gzip::compress(out, fill),
        Codec::Snappy => Snappy::compress(out, fill),
        Codec::Lz4 => Lz4::compress(out, fill),
        Codec::Zstd => Zstd::compress(out, fill),
    };
    // The codecs write into memory; they fail only on allocation, which aborts anyway.
    done.expect("compressing into memory cannot fail");
}

fn put_record(
    buf: &mut BytesMut,
    scratch: &mut BytesMut,
    offset_delta: i64,
    base_ts: i64,
    r: &Record,
) {
    scratch.clear();
    scratch.put_i8(0);
    put_varint(scratch, r.timestamp.wrapping_sub(base_ts));
    put_varint(scratch, offset_delta);
    put_bytes(scratch, r.key.as_deref());
    put_bytes(scratch, r.value.as_deref());
    put_varint(scratch, r.headers.len() as i64);
    for h in &r.headers {
        put_bytes(scratch, Some(h.name.as_bytes()));
        put_bytes(scratch, h.value.as_deref());
    }
    put_varint(buf, scratch.len() as i64);
    buf.extend_from_slice(scratch);
}

/// Kafka's zigzag varint (varlong: up to 10 bytes).
fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

fn get_varint(cur: &mut Bytes) -> Result<i64, BatchError> {
    let mut z = 0u64;
    for shift in (0..70).step_by(7) {
        if !cur.has_remaining() {
            return Err(corrupt("record runs past its batch"));
        }
        let b = cur.get_u8();
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(corrupt("varint longer than 10 bytes"))
}

fn get_bytes(cur: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    match get_varint(cur)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= cur.len())
            .map(|n| Some(cur.split_to(n)))
            .ok_or_else(|| corrupt(format!("impossible length {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_log::{BatchFormat, StoredRecord};
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            arb_bytes(),
            arb_bytes(),
            -1i64..i64::MAX / 4,
            // Repeated names on purpose: Kafka allows them and they must survive.
            proptest::collection::vec(("[ab]{1,2}", arb_bytes()), 0..4),
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

    fn arb_codec() -> impl Strategy<Value = Codec> {
        (0u8..5).prop_map(|c| Codec::from_id(c).unwrap())
    }

    fn stored(base: u64, records: &[Record], gap: u64) -> StoredBatch {
        let records: Vec<StoredRecord> = records
            .iter()
            .enumerate()
            .map(|(i, r)| StoredRecord {
                offset: base + i as u64 * gap,
                record: r.clone(),
            })
            .collect();
        StoredBatch {
            base_offset: base,
            last_offset: records.last().unwrap().offset,
            max_timestamp: records.iter().map(|r| r.record.timestamp).max().unwrap(),
            format: BatchFormat::default(),
            records,
        }
    }

    proptest! {
        #[test]
        fn batches_round_trip_with_every_codec(
            records in proptest::collection::vec(arb_record(), 1..20),
            codec in arb_codec(),
            base in 0u64..1 << 40,
        ) {
            let mut wire = BytesMut::new();
            encode_batch(&mut wire, &stored(base, &records, 1), codec);
            let decoded = decode_batches(wire.freeze()).unwrap();
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(decoded[0].codec, codec);
            prop_assert_eq!(&decoded[0].records, &records);
        }

        #[test]
        fn any_flipped_bit_after_the_length_is_caught(
            records in proptest::collection::vec(arb_record(), 1..5),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut wire = BytesMut::new();
            encode_batch(&mut wire, &stored(0, &records, 1), Codec::None);
            // Bytes 12..21 are the leader epoch, magic and CRC field: outside the CRC, but a
            // changed magic or CRC is caught too. Only the base offset and epoch are free.
            let i = 16 + flip.index(wire.len() - 16);
            wire[i] ^= 1 << bit;
            prop_assert!(decode_batches(wire.freeze()).is_err());
        }

        #[test]
        fn truncated_input_is_an_error_not_a_panic(
            records in proptest::collection::vec(arb_record(), 1..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = BytesMut::new();
            encode_batch(&mut wire, &stored(0, &records, 1), Codec::Gzip);
            let cut = cut.index(wire.len());
            prop_assert!(decode_batches(wire.freeze().slice(..cut)).is_err() || cut == 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batches(Bytes::from(bytes));
        }
    }

    #[test]
    fn served_batches_keep_offset_gaps_and_log_append_time() {
        let records: Vec<Record> = (0..3)
            .map(|i| Record::new(Some(format!("k{i}")), Some("v"), 1_000 + i))
            .collect();
        let mut batch = stored(10, &records, 3);
        batch.format.log_append_time = true;
        let mut wire = BytesMut::new();
        encode_batch(&mut wire, &batch, Codec::None);
        let attributes = i16::from_be_bytes([wire[21], wire[22]]);
        assert_eq!(attributes & LOG_APPEND_TIME, LOG_APPEND_TIME);
        let last_delta = i32::from_be_bytes(wire[23..27].try_into().unwrap());
        assert_eq!(last_delta, 6);
        // A producer's batch must count deltas from 0; a served one need not, so decoding it
        // as a produce is refused.
        assert!(matches!(
            decode_batches(wire.freeze()),
            Err(BatchError::Invalid(_))
        ));
    }

    #[test]
    fn an_abort_marker_is_a_control_batch() {
        let mut wire = BytesMut::new();
        encode_abort_marker(&mut wire, 41, 5);
        let decoded = decode_batches(wire.freeze()).unwrap();
        assert!(decoded[0].control && decoded[0].transactional);
        assert_eq!(decoded[0].records.len(), 1);
    }
}
