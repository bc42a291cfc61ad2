//! Topics: Metadata, CreateTopics, DeleteTopics, CreatePartitions (their settings:
//! `configs.rs`).
//!
//! There is one broker (node 0) and it leads every partition, with itself as the only replica.
//! A topic's id is derived from its name: stable across restarts, though a topic deleted and
//! created again under the same name keeps its id, where Kafka would give it a new one.

use std::sync::Arc;

use eddy_log::{validate_topic_name, Topic, TopicConfig, OFFSETS_TOPIC};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::configs::{SOURCE_DEFAULT, SOURCE_TOPIC};
use crate::{error_code, Broker};

/// The broker's node id; it leads every partition.
pub(crate) const NODE_ID: i32 = 0;

pub(crate) fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str(s))
}

/// A topic's id: a UUID made from its name (see the module docs).
pub(crate) fn topic_id(name: &str) -> uuid::Uuid {
    let a = crc32c::crc32c(name.as_bytes());
    let b = crc32c::crc32c_append(a, b"eddy-topic-id");
    let c = crc32c::crc32c_append(b, name.as_bytes());
    let d = crc32c::crc32c_append(c, b"eddy");
    let mut bytes = [0u8; 16];
    for (i, part) in [a, b, c, d].iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&part.to_be_bytes());
    }
    uuid::Uuid::from_bytes(bytes)
}

pub(crate) fn metadata(b: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(str(b.config.advertised_host.clone()))
        .with_port(i32::from(b.config.advertised_port));
    // v0 asks for every topic with an empty list; later versions with a null one.
    let wanted = match req.topics {
        Some(t) if !(t.is_empty() && version == 0) => Some(t),
        _ => None,
    };
    let topics = match wanted {
        None => b.log.topics().iter().map(|t| describe_topic(t)).collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|name| {
                let name = name.as_str();
                match b.log.topic(name) {
                    Ok(t) => describe_topic(&t),
                    Err(_) if b.config.auto_create_topics && req.allow_auto_topic_creation => {
                        match auto_create(b, name) {
                            Ok(t) => describe_topic(&t),
                            Err(code) => topic_error(name, code),
                        }
                    }
                    Err(_) => topic_error(name, ResponseError::UnknownTopicOrPartition.code()),
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(str(b.cluster_id.clone())))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

fn auto_create(b: &Broker, name: &str) -> Result<Arc<Topic>, i16> {
    validate_topic_name(name).map_err(|e| error_code(&e))?;
    match b.log.create_topic(
        name,
        TopicConfig::with_partitions(b.config.default_partitions),
    ) {
        Ok(t) => Ok(t),
        // Another client created it meanwhile.
        Err(eddy_log::LogError::TopicExists(_)) => b.log.topic(name).map_err(|e| error_code(&e)),
        Err(e) => Err(error_code(&e)),
    }
}

fn topic_error(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(code)
}

fn describe_topic(t: &Topic) -> MetadataResponseTopic {
    let partitions = (0..t.partition_count())
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(t.name())))
        .with_topic_id(topic_id(t.name()))
        .with_is_internal(t.name() == OFFSETS_TOPIC)
        .with_partitions(partitions)
}

pub(crate) fn create_topics(b: &Arc<Broker>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.as_str().to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            let fail = |code: i16, message: String| {
                result
                    .clone()
                    .with_error_code(code)
                    .with_error_message(Some(str(message)))
            };
            // Explicit replica assignments (Kafka wants them instead of a count and a factor)
            // can only name this broker, once per partition, for partitions 0..n.
            let assigned = t.assignments.len() as i32;
            if assigned > 0 {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return fail(
                        ResponseError::InvalidRequest.code(),
                        "both numPartitions or replicationFactor and replicasAssignments were set"
                            .into(),
                    );
                }
                let mut indexes: Vec<i32> =
                    t.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                let only_here = t
                    .assignments
                    .iter()
                    .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0] == BrokerId(NODE_ID));
                if !only_here || indexes != (0..assigned).collect::<Vec<_>>() {
                    return fail(
                        ResponseError::InvalidReplicaAssignment.code(),
                        format!(
                            "partitions must be 0 to {} with broker {NODE_ID} as the one replica",
                            assigned - 1
                        ),
                    );
                }
            }
            // -1: the broker's defaults (KIP-464).
            if !(t.replication_factor == -1 || t.replication_factor == 1) {
                return fail(
                    ResponseError::InvalidReplicationFactor.code(),
                    format!(
                        "replication factor {} is larger than the 1 broker available",
                        t.replication_factor
                    ),
                );
            }
            let partitions = match t.num_partitions {
                -1 if assigned > 0 => assigned as u32,
                -1 => b.config.default_partitions,
                n if n > 0 => n as u32,
                n => {
                    return fail(
                        ResponseError::InvalidPartitions.code(),
                        format!("number of partitions must be positive, not {n}"),
                    )
                }
            };
            let mut config = TopicConfig::with_partitions(partitions);
            for c in &t.configs {
                let value = c.value.as_ref().map_or("", |v| v.as_str());
                if let Err(e) = config.set_kafka(c.name.as_str(), value) {
                    return fail(ResponseError::InvalidConfig.code(), e.to_string());
                }
            }
            let created = if req.validate_only {
                validate_topic_name(&name).and_then(|()| match b.log.topic(&name) {
                    Ok(_) => Err(eddy_log::LogError::TopicExists(name.clone())),
                    Err(_) => Ok(()),
                })
            } else {
                b.log.create_topic(&name, config.clone()).map(|_| ())
            };
            match created {
                Ok(()) => result
                    .with_topic_id(topic_id(&name))
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(1)
                    .with_configs(Some(
                        config
                            .kafka_entries()
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(str(e.name))
                                    .with_value(Some(str(e.value)))
                                    .with_config_source(if e.is_default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_TOPIC
                                    })
                            })
                            .collect(),
                    )),
                Err(e) => fail(error_code(&e), e.to_string()),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

pub(crate) fn delete_topics(
    b: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let names: Vec<Result<String, uuid::Uuid>> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| match t.name {
                Some(n) => Ok(n.as_str().to_string()),
                None => b
                    .log
                    .topics()
                    .iter()
                    .map(|t| t.name().to_string())
                    .find(|n| topic_id(n) == t.topic_id)
                    .ok_or(t.topic_id),
            })
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| Ok(n.as_str().to_string()))
            .collect()
    };
    let responses = names
        .into_iter()
        .map(|name| match name {
            Err(id) => DeletableTopicResult::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
            Ok(name) => {
                let result = DeletableTopicResult::default()
                    .with_name(Some(topic_name(&name)))
                    .with_topic_id(topic_id(&name));
                match b.log.delete_topic(&name) {
                    Ok(()) => {
                        b.producers.forget_topic(&name);
                        result
                    }
                    Err(e) => result
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(str(e.to_string()))),
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn create_partitions(
    b: &Arc<Broker>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let name = t.name.as_str();
            let outcome = match b.log.topic(name) {
                Err(e) => Err((error_code(&e), e.to_string())),
                Ok(topic) if t.count <= topic.partition_count() as i32 => Err((
                    ResponseError::InvalidPartitions.code(),
                    format!(
                        "topic {name} has {} partitions; the count can only grow",
                        topic.partition_count()
                    ),
                )),
                // Assignments, if given, place each new partition: here, on this broker alone.
                Ok(topic)
                    if t.assignments.as_ref().is_some_and(|a| {
                        a.len() as i32 != t.count - topic.partition_count() as i32
                            || a.iter().any(|p| p.broker_ids != [BrokerId(NODE_ID)])
                    }) =>
                {
                    Err((
                        ResponseError::InvalidReplicaAssignment.code(),
                        format!(
                            "each of the {} new partitions must have broker {NODE_ID} as its one replica",
                            t.count - topic.partition_count() as i32
                        ),
                    ))
                }
                Ok(_) if req.validate_only => Ok(()),
                Ok(_) => b
                    .log
                    .add_partitions(name, t.count as u32)
                    .map(|_| ())
                    .map_err(|e| (error_code(&e), e.to_string())),
            };
            match outcome {
                Ok(()) => result,
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(str(message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
