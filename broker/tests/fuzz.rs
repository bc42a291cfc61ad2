//! Fuzz target of the Kafka listener (see `eddy-fuzz`): frames mutated from real clients'
//! requests, sent over a socket to a broker in this process. Whatever a frame holds, the broker
//! answers it or closes that connection; no task of it panics (the fuzzer sees panics on every
//! thread), and it goes on serving the next connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::wire::{self, str};
use common::TestBroker;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;

/// A request frame (without its size prefix) as a client encodes it.
fn frame<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn seeds() -> Vec<Vec<u8>> {
    let topic = || TopicName(str("fz"));
    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 9, &MetadataRequest::default()),
        frame(
            ApiKey::Metadata,
            11,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic()))
            ])),
        ),
        frame(
            ApiKey::Produce,
            8,
            &wire::produce_request("fz", 0, wire::batch(3, None, Compression::None), 1),
        ),
        frame(
            ApiKey::Produce,
            9,
            &wire::produce_request("fz", 0, wire::batch(2, Some((1, 0)), Compression::Gzip), -1),
        ),
        frame(ApiKey::Fetch, 11, &wire::fetch_request("fz", 0, 0)),
        frame(
            ApiKey::ListOffsets,
            5,
            &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]),
        ),
        frame(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(str("g")),
        ),
        frame(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(str("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0])])),
        ),
        frame(
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str("fz")),
            ]),
        ),
        frame(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default()),
    ]
}

#[test]
fn fuzz_kafka_frames() {
    let broker = TestBroker::start();
    wire::create(&broker, "fz", |_| {});
    let addr = broker.addr;
    eddy_fuzz::run("kafka_frames", seeds(), |input| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // Mostly well-framed; an input starting with 0xff goes out raw, size prefix and all.
        let mut out = Vec::with_capacity(input.len() + 4);
        match input.first() {
            Some(0xff) => out.extend_from_slice(&input[1..]),
            _ => {
                out.extend_from_slice(&(input.len() as i32).to_be_bytes());
                out.extend_from_slice(input);
            }
        }
        if stream.write_all(&out).is_err() {
            return;
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
    });
    // Still serving.
    let mut c = wire::Conn::connect(&broker);
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}
