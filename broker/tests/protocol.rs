//! The broker at the wire: requests encoded by the `kafka-protocol` crate's client side and
//! record batches by its encoder (not Eddy's), over a real socket.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::wire::*;
use common::TestBroker;
use eddy_log::Record;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

#[test]
fn a_newer_api_versions_request_gets_the_v0_error_reply() {
    let b = TestBroker::start();
    let mut c = Conn::connect(&b);
    // Version 9, which no Kafka has yet: the header says 9, the body is a v3 body (the crate
    // cannot encode a version it does not know; the broker must not read the body anyway).
    c.correlation += 1;
    let correlation = c.correlation;
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(9)
        .with_correlation_id(correlation)
        .encode(&mut buf, ApiKey::ApiVersions.request_header_version(3))
        .unwrap();
    ApiVersionsRequest::default().encode(&mut buf, 3).unwrap();
    c.send_raw(&buf);
    let mut frame = c.read_frame().unwrap();
    assert_eq!(
        frame.get_i32(),
        correlation,
        "a v0 header: just the correlation id"
    );
    let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    let produce = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
    // The connection stays usable: the client retries with a version from the list.
    let ok: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0);
}

#[test]
fn broken_frames_close_their_connection_and_nothing_else() {
    let b = TestBroker::start();
    let mut other = Conn::connect(&b);
    // A size prefix past socket.request.max.bytes.
    let mut c = Conn::connect(&b);
    c.stream.write_all(&(200i32 << 20).to_be_bytes()).unwrap();
    assert!(c.is_closed());
    // A negative size.
    let mut c = Conn::connect(&b);
    c.stream.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(c.is_closed());
    // An API key Kafka does not have.
    let mut c = Conn::connect(&b);
    let mut frame = BytesMut::new();
    frame.put_i16(999);
    frame.put_i16(0);
    frame.put_i32(1);
    frame.put_i16(-1);
    c.send_raw(&frame);
    assert!(c.is_closed());
    // A request cut short.
    let mut c = Conn::connect(&b);
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(1)
        .with_correlation_id(1)
        .encode(&mut frame, 1)
        .unwrap();
    frame.put_i32(3); // three topics promised, none follow
    c.send_raw(&frame);
    assert!(c.is_closed());
    // Billions of topics promised in 18 bytes: refused before anything is allocated for them
    // (kafka-protocol 0.18 sized a vector from the count and aborted the process).
    let mut c = Conn::connect(&b);
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ListOffsets as i16)
        .with_request_api_version(1)
        .with_correlation_id(1)
        .encode(&mut frame, 1)
        .unwrap();
    frame.put_i32(-1); // replica id
    frame.put_i32(i32::MAX);
    c.send_raw(&frame);
    assert!(c.is_closed());
    // A version of Produce that is not served.
    let mut c = Conn::connect(&b);
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(2)
        .with_correlation_id(1)
        .encode(&mut buf, 1)
        .unwrap();
    produce_request("t", 0, Bytes::new(), 1)
        .encode(&mut buf, 3)
        .unwrap();
    c.send_raw(&buf);
    assert!(c.is_closed());
    // The first connection never noticed.
    let r: MetadataResponse = other.call(ApiKey::Metadata, 9, &MetadataRequest::default());
    assert_eq!(r.brokers.len(), 1);
}

#[test]
fn a_client_that_stops_reading_is_no_longer_read() {
    let b = TestBroker::start();
    create(&b, "big", |_| {});
    let partition = b.log.partition("big", 0).unwrap();
    let value = Bytes::from(vec![7u8; 256 << 10]);
    for _ in 0..4 {
        partition
            .append(&[Record::new(None::<Bytes>, Some(value.clone()), 1)])
            .unwrap();
    }
    // Fetches of 1 MiB each, sent without ever reading a response.
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(1)
        .encode(&mut frame, ApiKey::Fetch.request_header_version(12))
        .unwrap();
    fetch_request("big", 0, 0).encode(&mut frame, 12).unwrap();
    let mut one = (frame.len() as i32).to_be_bytes().to_vec();
    one.extend_from_slice(&frame);
    let mut c = Conn::connect(&b);
    c.stream.set_nonblocking(true).unwrap();
    let (mut sent, mut at) = (0usize, 0usize);
    let started = Instant::now();
    // The server has stopped reading once the socket stays full for a while: were it reading
    // on, buffering a megabyte per request, it would drain it again.
    'full: loop {
        loop {
            match c.stream.write(&one[at..]) {
                Ok(n) => {
                    at += n;
                    if at == one.len() {
                        (sent, at) = (sent + 1, 0);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        match c.stream.write(&one[at..]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break 'full,
            Ok(n) => at += n,
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server kept reading: {sent} requests"
        );
    }
    // What it holds is bounded by its queue of replies and the sockets' buffers, not by what
    // the client sent; everyone else is served as before.
    assert!(sent < 200_000, "{sent} requests read");
    let mut other = Conn::connect(&b);
    let (error, hw, records) = fetch(&mut other, "big", 0, 0);
    assert_eq!((error, hw, records.len()), (0, 4, 4));
}

#[test]
fn a_damaged_batch_is_refused_and_nothing_of_it_is_written() {
    let b = TestBroker::start();
    create(&b, "t", |_| {});
    let mut c = Conn::connect(&b);
    let good = batch(3, None, Compression::None);
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert_eq!(
        produce(&mut c, "t", 0, bad.freeze()).0,
        ResponseError::CorruptMessage.code()
    );
    // Truncated: the length says more than there is.
    let cut = good.slice(..good.len() - 5);
    assert_eq!(
        produce(&mut c, "t", 0, cut).0,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(b.log.partition("t", 0).unwrap().end_offset(), 0);
    assert_eq!(produce(&mut c, "t", 0, good), (0, 0));
    assert_eq!(b.log.partition("t", 0).unwrap().end_offset(), 3);
}

#[test]
fn produce_errors_name_the_problem() {
    let b = TestBroker::start();
    create(&b, "small", |c| c.max_message_bytes = 200);
    create(&b, "compacted", |c| c.compact = true);
    let mut c = Conn::connect(&b);
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        produce(&mut c, "nope", 0, batch(1, None, Compression::None)).0,
        unknown
    );
    assert_eq!(
        produce(&mut c, "small", 7, batch(1, None, Compression::None)).0,
        unknown
    );
    assert_eq!(
        produce(&mut c, "small", 0, batch(20, None, Compression::None)).0,
        ResponseError::MessageTooLarge.code()
    );
    let mut keyless = record(0, "", "v", 1);
    keyless.key = None;
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let keyed = record(0, "k", "v", 1);
    (keyless.offset, keyless.sequence) = (1, 0);
    RecordBatchEncoder::encode(&mut buf, [&keyed, &keyless], &options).unwrap();
    // The batch is refused, naming the keyless record (KIP-467), and none of it is written.
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("compacted", 0, buf.freeze(), -1),
    );
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    let named: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(named, [1]);
    // Two batches, the second with a keyless record: the first is not written either.
    let mut two = BytesMut::new();
    RecordBatchEncoder::encode(&mut two, [&keyed], &options).unwrap();
    RecordBatchEncoder::encode(&mut two, [&keyless], &options).unwrap();
    assert_eq!(
        produce(&mut c, "compacted", 0, two.freeze()).0,
        ResponseError::InvalidRecord.code()
    );
    assert_eq!(b.log.partition("compacted", 0).unwrap().end_offset(), 0);
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("small", 0, batch(1, None, Compression::None), 3),
    );
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRequiredAcks.code()
    );
}

#[test]
fn idempotent_producers_are_deduplicated_and_kept_in_order() {
    let b = TestBroker::start();
    create(&b, "t", |_| {});
    let mut c = Conn::connect(&b);
    let init: InitProducerIdResponse = c.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1),
    );
    assert_eq!(init.error_code, 0);
    let id = init.producer_id.0;
    assert!(id >= 0);
    assert_eq!(
        produce(&mut c, "t", 0, batch(5, Some((id, 0)), Compression::None)),
        (0, 0)
    );
    // The same batch again (a retry after a lost response): the first offset, no copy.
    assert_eq!(
        produce(&mut c, "t", 0, batch(5, Some((id, 0)), Compression::None)),
        (0, 0)
    );
    assert_eq!(b.log.partition("t", 0).unwrap().end_offset(), 5);
    // A gap in the sequence (a batch was lost in between) is refused.
    assert_eq!(
        produce(&mut c, "t", 0, batch(5, Some((id, 7)), Compression::None)).0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        produce(&mut c, "t", 0, batch(2, Some((id, 5)), Compression::Lz4)),
        (0, 5)
    );
    assert_eq!(b.log.partition("t", 0).unwrap().end_offset(), 7);
}

#[test]
fn every_codec_round_trips_and_is_served_as_produced() {
    let b = TestBroker::start();
    let mut c = Conn::connect(&b);
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{i}");
        create(&b, &topic, |_| {});
        assert_eq!(produce(&mut c, &topic, 0, batch(50, None, codec)).0, 0);
        let r: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request(&topic, 0, 0));
        let mut bytes = r.responses[0].partitions[0].records.clone().unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert_eq!(sets.len(), 1, "one stored batch, served whole");
        assert_eq!(sets[0].compression, codec);
        let records = &sets[0].records;
        assert_eq!(records.len(), 50);
        assert_eq!(records[49].offset, 49);
        assert_eq!(records[49].key.as_deref(), Some(&b"k49"[..]));
        assert_eq!(records[49].value.as_deref(), Some(&b"value-49"[..]));
        assert_eq!(records[49].timestamp, 1_049);
    }
}

#[test]
fn a_log_append_time_topic_stamps_and_says_so() {
    let b = TestBroker::start();
    create(&b, "stamped", |c| c.log_append_time = true);
    let mut c = Conn::connect(&b);
    let before = eddy_log::now_ms();
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request("stamped", 0, batch(3, None, Compression::None), 1),
    );
    let stamp = r.responses[0].partition_responses[0].log_append_time_ms;
    assert!(stamp >= before, "the append time, not the producer's 1000");
    let (_, _, records) = fetch(&mut c, "stamped", 0, 0);
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.timestamp_type == TimestampType::LogAppend && r.timestamp == stamp));
}

#[test]
fn fetch_waits_up_to_max_wait_and_answers_when_data_comes() {
    let b = TestBroker::start();
    create(&b, "t", |_| {});
    let mut c = Conn::connect(&b);
    let started = Instant::now();
    let (error, hw, records) = fetch(&mut c, "t", 0, 300);
    assert_eq!((error, hw, records.len()), (0, 0, 0));
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    let partition = b.log.partition("t", 0).unwrap();
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        partition
            .append(&[Record::new(Some("k"), Some("v"), 5)])
            .unwrap();
    });
    let started = Instant::now();
    let (_, hw, records) = fetch(&mut c, "t", 0, 20_000);
    assert_eq!((hw, records.len()), (1, 1));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered when the record came, not at max_wait_ms"
    );
    appender.join().unwrap();
    // Past the end: out of range, at once.
    assert_eq!(
        fetch(&mut c, "t", 5, 20_000).0,
        ResponseError::OffsetOutOfRange.code()
    );
}

#[test]
fn fetch_serves_only_what_eddy_transactions_committed() {
    let b = TestBroker::start();
    create(&b, "out", |_| {});
    let partition = b.log.partition("out", 0).unwrap();
    partition
        .append(&[Record::new(Some("a"), Some("1"), 1)])
        .unwrap();
    let mut open = partition.begin(eddy_log::writer_id("query-1"));
    open.append(&[Record::new(Some("b"), Some("2"), 2)])
        .unwrap();
    let mut c = Conn::connect(&b);
    let (_, hw, records) = fetch(&mut c, "out", 0, 0);
    assert_eq!(
        (hw, records.len()),
        (1, 1),
        "the open transaction is not served"
    );
    // As a query's task does: its output durable, then the commit.
    partition
        .wait_durable_blocking(partition.written_offset())
        .unwrap();
    open.commit().unwrap();
    let (_, hw, records) = fetch(&mut c, "out", 1, 0);
    assert_eq!((hw, records.len()), (2, 1));
    assert_eq!(records[0].value.as_deref(), Some(&b"2"[..]));
    // An aborted transaction's records are never served; a consumer at their start gets an
    // abort marker that moves it past them.
    let mut aborted = partition.begin(eddy_log::writer_id("query-1"));
    aborted
        .append(&[
            Record::new(Some("c"), Some("3"), 3),
            Record::new(Some("d"), Some("4"), 4),
        ])
        .unwrap();
    partition
        .wait_durable_blocking(partition.written_offset())
        .unwrap();
    aborted.abort().unwrap();
    let (_, hw, records) = fetch(&mut c, "out", 2, 0);
    assert_eq!(hw, 4);
    assert_eq!(records.len(), 1);
    assert!(records[0].control, "only the marker");
    assert_eq!(records[0].offset, 3);
    partition
        .append(&[Record::new(Some("e"), Some("5"), 5)])
        .unwrap();
    let (_, _, records) = fetch(&mut c, "out", 4, 0);
    assert_eq!(records[0].value.as_deref(), Some(&b"5"[..]));
}

#[test]
fn list_offsets_by_time_and_at_the_ends() {
    let b = TestBroker::start();
    create(&b, "t", |_| {});
    let partition = b.log.partition("t", 0).unwrap();
    for ts in [100, 200, 300] {
        partition
            .append(&[Record::new(Some("k"), Some("v"), ts)])
            .unwrap();
    }
    let mut c = Conn::connect(&b);
    let mut ask = |ts: i64| -> (i64, i64) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(str("t")))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (p.offset, p.timestamp)
    };
    assert_eq!(ask(-2).0, 0);
    assert_eq!(ask(-1).0, 3);
    assert_eq!(ask(150), (1, 200));
    assert_eq!(ask(300), (2, 300));
    assert_eq!(ask(301), (-1, -1));
    assert_eq!(ask(-3), (2, 300), "the record with the largest timestamp");
}
