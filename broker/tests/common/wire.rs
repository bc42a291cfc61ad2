//! Speaking Kafka's protocol to the broker as a client does: requests and record batches
//! encoded by the `kafka-protocol` crate's client side (not Eddy's code), over a real socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eddy_log::TopicConfig;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use super::TestBroker;

pub struct Conn {
    pub stream: TcpStream,
    pub correlation: i32,
}

impl Conn {
    pub fn connect(b: &TestBroker) -> Conn {
        let stream = TcpStream::connect(b.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Conn {
            stream,
            correlation: 0,
        }
    }

    pub fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> i32 {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("protocol-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        self.send_raw(&buf);
        self.correlation
    }

    pub fn send_raw(&mut self, frame: &[u8]) {
        let mut out = Vec::with_capacity(frame.len() + 4);
        out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        out.extend_from_slice(frame);
        self.stream.write_all(&out).unwrap();
    }

    /// The next response frame, or `None` once the broker has closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    pub fn receive<R: Decodable>(&mut self, key: ApiKey, version: i16, correlation: i32) -> R {
        let mut frame = self.read_frame().expect("a response");
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation);
        R::decode(&mut frame, version).unwrap()
    }

    pub fn call<Q: Encodable, R: Decodable>(&mut self, key: ApiKey, version: i16, req: &Q) -> R {
        let c = self.send(key, version, req);
        self.receive(key, version, c)
    }

    pub fn is_closed(&mut self) -> bool {
        self.read_frame().is_none()
    }
}

pub fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn record(offset: i64, key: &str, value: &str, ts: i64) -> KRecord {
    KRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1 + offset as i32,
        timestamp: ts,
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        headers: IndexMap::new(),
    }
}

/// One batch of `n` records, as a producer (`producer` id, epoch 0, first sequence `seq`).
pub fn batch(n: usize, producer: Option<(i64, i32)>, compression: Compression) -> Bytes {
    let records: Vec<KRecord> = (0..n)
        .map(|i| {
            let mut r = record(
                i as i64,
                &format!("k{i}"),
                &format!("value-{i}"),
                1_000 + i as i64,
            );
            if let Some((id, seq)) = producer {
                r.producer_id = id;
                r.producer_epoch = 0;
                r.sequence = seq + i as i32;
            }
            r
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces and returns (error code, base offset).
pub fn produce(c: &mut Conn, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &produce_request(topic, partition, records, -1),
    );
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(str(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// Fetches partition 0 from `offset`: (error, high watermark, records decoded).
pub fn fetch(c: &mut Conn, topic: &str, offset: i64, max_wait_ms: i32) -> (i16, i64, Vec<KRecord>) {
    let r: FetchResponse = c.call(
        ApiKey::Fetch,
        12,
        &fetch_request(topic, offset, max_wait_ms),
    );
    let p = &r.responses[0].partitions[0];
    let mut records = Vec::new();
    if let Some(mut bytes) = p.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            records.extend(set.records);
        }
    }
    (p.error_code, p.high_watermark, records)
}

pub fn create(b: &TestBroker, name: &str, configure: impl FnOnce(&mut TopicConfig)) {
    let mut config = TopicConfig::with_partitions(1);
    configure(&mut config);
    b.log.create_topic(name, config).unwrap();
}
