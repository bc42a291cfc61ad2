//! Topics' settings through Kafka's config APIs, at the wire: DescribeConfigs, AlterConfigs
//! and IncrementalAlterConfigs, and what a change does to the topic at once.

mod common;

use bytes::BytesMut;
use common::wire::*;
use common::TestBroker;
use eddy_log::TopicConfig;
use kafka_protocol::messages::*;
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
use kafka_protocol::ResponseError;

fn described(c: &mut Conn, topic: &str, name: &str) -> String {
    let r: DescribeConfigsResponse = c.call(
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str(topic))
                .with_configuration_keys(Some(vec![str(name)])),
        ]),
    );
    r.results[0].configs[0].value.as_ref().unwrap().to_string()
}

fn incremental(
    c: &mut Conn,
    topic: &str,
    configs: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let r: IncrementalAlterConfigsResponse = c.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str(topic))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(name, op, value)| {
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(str(name))
                                    .with_config_operation(*op)
                                    .with_value(value.map(str))
                            })
                            .collect(),
                    ),
            ]),
    );
    let r = &r.responses[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn topic_settings_are_altered_as_kafka_alters_them() {
    let b = TestBroker::start();
    create(&b, "t", |_| {});
    let mut c = Conn::connect(&b);
    let mut keyless = record(0, "", "v", 1);
    keyless.key = None;
    let keyless_batch = || {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&keyless], &options).unwrap();
        buf.freeze()
    };
    // Only checked: nothing changes.
    assert_eq!(
        incremental(&mut c, "t", &[("cleanup.policy", 0, Some("compact"))], true).0,
        0
    );
    assert_eq!(described(&mut c, "t", "cleanup.policy"), "delete");
    // Set: in effect at once, for the partition writers already hold too.
    assert_eq!(
        incremental(
            &mut c,
            "t",
            &[("cleanup.policy", 0, Some("compact"))],
            false
        )
        .0,
        0
    );
    assert_eq!(described(&mut c, "t", "cleanup.policy"), "compact");
    assert_eq!(
        produce(&mut c, "t", 0, keyless_batch()).0,
        ResponseError::InvalidRecord.code()
    );
    assert!(b.log.topic("t").unwrap().config().compact);
    // Delete: back to the default.
    assert_eq!(
        incremental(&mut c, "t", &[("cleanup.policy", 1, None)], false).0,
        0
    );
    assert_eq!(produce(&mut c, "t", 0, keyless_batch()).0, 0);
    // Bad names, values and operations change nothing and say why.
    let invalid = ResponseError::InvalidConfig.code();
    assert_eq!(
        incremental(&mut c, "t", &[("no.such", 0, Some("1"))], false).0,
        invalid
    );
    assert_eq!(
        incremental(&mut c, "t", &[("retention.ms", 0, Some("soon"))], false).0,
        invalid
    );
    assert_eq!(
        incremental(&mut c, "t", &[("retention.ms", 2, Some("5"))], false).0,
        invalid,
        "APPEND is for list settings"
    );
    // A list setting grows and shrinks by item.
    let policy = |c: &mut Conn, op: i8, item: &str| {
        incremental(c, "t", &[("cleanup.policy", op, Some(item))], false).0
    };
    assert_eq!(policy(&mut c, 2, "compact"), 0);
    assert!(b.log.topic("t").unwrap().config().compact);
    assert_eq!(
        policy(&mut c, 3, "compact"),
        invalid,
        "nothing would be left"
    );
    assert_eq!(policy(&mut c, 2, "delete"), 0);
    assert!(b.log.topic("t").unwrap().config().compact, "compact,delete");
    assert_eq!(policy(&mut c, 0, "delete"), 0);
    assert!(!b.log.topic("t").unwrap().config().compact);
    assert_eq!(
        incremental(&mut c, "nope", &[("retention.ms", 0, Some("1"))], false).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Writing back what was described changes nothing (the fsync policy stays the log's).
    let before = b.log.topic("t").unwrap().config().clone();
    let all: Vec<(String, String)> = before
        .kafka_entries()
        .into_iter()
        .map(|e| (e.name.to_string(), e.value))
        .collect();
    let r: AlterConfigsResponse = c.call(
        ApiKey::AlterConfigs,
        2,
        &AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str("t"))
                .with_configs(
                    all.iter()
                        .map(|(n, v)| {
                            alter_configs_request::AlterableConfig::default()
                                .with_name(str(n))
                                .with_value(Some(str(v)))
                        })
                        .collect(),
                ),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(*b.log.topic("t").unwrap().config(), before);
    // AlterConfigs replaces the whole set: what it does not name goes back to its default.
    incremental(&mut c, "t", &[("retention.ms", 0, Some("60000"))], false);
    let r: AlterConfigsResponse = c.call(
        ApiKey::AlterConfigs,
        2,
        &AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(str("max.message.bytes"))
                    .with_value(Some(str("5000")))]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(described(&mut c, "t", "max.message.bytes"), "5000");
    assert_eq!(
        described(&mut c, "t", "retention.ms"),
        TopicConfig::default()
            .kafka_entries()
            .into_iter()
            .find(|e| e.name == "retention.ms")
            .unwrap()
            .value
    );
    // Kept across a restart: the change is in the topic's file.
    let file = b.dir.path().join("data/topics/t/topic.json");
    let on_disk: TopicConfig = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(on_disk.max_message_bytes, 5000);
}
