//! OffsetCommit and OffsetFetch, on the log's committed offsets.
//!
//! A Kafka group's commits are the same as those of Eddy's own consumers (`eddy consume
//! --group`), in the log's offsets topic: either resumes where the other committed. A commit is
//! fsynced before it is acknowledged; its metadata string reads back as committed.

use std::sync::Arc;

use eddy_log::{OffsetAndMetadata, TopicPartition};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::admin::{str, topic_name};
use crate::connection::{Head, Reply};
use crate::{error_code, Broker};

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

/// A partition's commit, or the error code that refused it.
type Checked = Result<OffsetAndMetadata, i16>;

pub(crate) fn offset_commit(b: &Arc<Broker>, head: &Head, req: OffsetCommitRequest) -> Reply {
    let group = req.group_id.as_str().to_string();
    let allowed = b.groups.check_commit(
        &group,
        req.generation_id_or_member_epoch,
        req.member_id.as_str(),
    );
    let mut outcome: Vec<(TopicName, Vec<(i32, Checked)>)> = Vec::new();
    let mut commits = Vec::new();
    for t in req.topics {
        let topic = b.log.topic(t.name.as_str()).ok();
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| {
                let index = p.partition_index;
                let metadata = p
                    .committed_metadata
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let checked = allowed.and_then(|()| {
                    let exists = topic.as_ref().is_some_and(|t| {
                        u32::try_from(index).is_ok_and(|i| i < t.partition_count())
                    });
                    if !exists {
                        Err(ResponseError::UnknownTopicOrPartition.code())
                    } else if metadata.len() > MAX_METADATA {
                        Err(ResponseError::OffsetMetadataTooLarge.code())
                    } else {
                        u64::try_from(p.committed_offset)
                            .map(|offset| OffsetAndMetadata { offset, metadata })
                            .map_err(|_| ResponseError::InvalidCommitOffsetSize.code())
                    }
                });
                if let Ok(c) = &checked {
                    commits.push((
                        TopicPartition::new(t.name.as_str(), index as u32),
                        c.clone(),
                    ));
                }
                (index, checked)
            })
            .collect();
        outcome.push((t.name, partitions));
    }
    let b = b.clone();
    Reply::later(head, async move {
        // The offsets topic fsyncs every commit: off the connection's thread.
        let committed = if commits.is_empty() {
            Ok(())
        } else {
            let log = b.log.clone();
            tokio::task::spawn_blocking(move || log.commit_offsets_with_metadata(&group, &commits))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        };
        let failure = committed.as_ref().err().map(error_code);
        if let Err(e) = &committed {
            tracing::warn!("kafka offset commit: {e}");
        }
        let topics = outcome
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, r)| {
                                let code = match r {
                                    Ok(_) => failure.unwrap_or(0),
                                    Err(code) => code,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    })
}

/// What a group committed for the partitions asked for (all it committed when `None`): per
/// topic, (partition, offset or -1, metadata).
type Fetched = Vec<(String, Vec<(i32, i64, String)>)>;

fn committed(b: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|p| {
                        let c = u32::try_from(p)
                            .ok()
                            .and_then(|i| b.log.committed(group, &TopicPartition::new(&*topic, i)));
                        match c {
                            Some(c) => (p, c.offset as i64, c.metadata),
                            None => (p, -1, String::new()),
                        }
                    })
                    .collect();
                (topic, partitions)
            })
            .collect(),
        None => {
            let mut by_topic: Fetched = Vec::new();
            for (tp, c) in b.log.group_offsets(group) {
                let entry = (tp.partition as i32, c.offset as i64, c.metadata);
                match by_topic.last_mut() {
                    Some((t, ps)) if *t == tp.topic => ps.push(entry),
                    _ => by_topic.push((tp.topic, vec![entry])),
                }
            }
            by_topic
        }
    }
}

pub(crate) fn offset_fetch(
    b: &Arc<Broker>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = committed(b, g.group_id.as_str(), asked)
                    .into_iter()
                    .map(|(topic, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, offset, metadata)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_metadata(Some(str(metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
            .collect()
    });
    let topics = committed(b, req.group_id.as_str(), asked)
        .into_iter()
        .map(|(topic, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, offset, metadata)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str(metadata)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
