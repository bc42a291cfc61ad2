//! Produce and InitProducerId.
//!
//! A produce request is checked and appended while its connection reads it, so the batches of
//! one connection land in the order they were sent; only the wait for durability is left to
//! the reply. Each batch must be whole and intact (CRC), in format v2, no larger than the
//! topic's `max.message.bytes`, compressed with a codec Kafka knows, with keys on a compacted
//! topic. A partition whose batch fails any check gets its error code and none of that
//! request's batches for it are appended after the failing one (earlier ones stay: Kafka
//! appends a partition's batches one by one too).
//!
//! Acknowledgement: with `acks` 1 or all (-1) the reply waits until the topic's fsync policy
//! has made every appended record durable (a group commit's fsync, by default). With `acks=0`
//! there is no reply at all.

use std::sync::Arc;

use eddy_log::{Partition, TopicConfig, OFFSETS_TOPIC};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::admin::str;
use crate::connection::{Head, Reply};
use crate::error::BrokerError;
use crate::producers::{BatchSeq, Sequenced};
use crate::records::{decode_batches, BatchError, ProducedBatch};
use crate::{error_code, Broker};

/// One partition's outcome, and the offset its acknowledgement waits for.
struct Appended {
    index: i32,
    response: PartitionProduceResponse,
    durable: Option<(Arc<Partition>, u64)>,
}

pub(crate) fn produce(
    b: &Arc<Broker>,
    head: &Head,
    req: ProduceRequest,
) -> Result<Reply, BrokerError> {
    if !matches!(req.acks, -1..=1) {
        let topics = req
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                failed(p.index, ResponseError::InvalidRequiredAcks.code(), None)
                            })
                            .collect(),
                    )
            })
            .collect();
        return Reply::now(head, ProduceResponse::default().with_responses(topics));
    }
    if req.transactional_id.is_some() {
        // Kafka's transactional producers need the transaction APIs, which are not served.
        return Err(BrokerError::Malformed {
            api: "Produce",
            version: head.version,
            reason: "transactional produce is not supported".into(),
        });
    }
    let mut results: Vec<(TopicName, Vec<Appended>)> = Vec::new();
    for t in req.topic_data {
        let name = t.name.as_str().to_string();
        let topic = b.log.topic(&name).ok();
        let partitions = t
            .partition_data
            .into_iter()
            .map(|p| match &topic {
                _ if name == OFFSETS_TOPIC => Appended::error(
                    p.index,
                    ResponseError::InvalidTopicException.code(),
                    "the offsets topic is internal",
                ),
                None => Appended::error(p.index, ResponseError::UnknownTopicOrPartition.code(), ""),
                Some(topic) => match u32::try_from(p.index)
                    .ok()
                    .and_then(|i| topic.partition(i).ok())
                {
                    None => {
                        Appended::error(p.index, ResponseError::UnknownTopicOrPartition.code(), "")
                    }
                    Some(partition) => append(b, partition, topic.config(), p),
                },
            })
            .collect();
        results.push((t.name, partitions));
    }
    if req.acks == 0 {
        return Ok(Reply::Silent);
    }
    Ok(Reply::later(head, async move {
        let mut topics = Vec::with_capacity(results.len());
        for (name, partitions) in results {
            let mut responses = Vec::with_capacity(partitions.len());
            for a in partitions {
                let mut response = a.response;
                if let Some((partition, next)) = a.durable {
                    if let Err(e) = partition.wait_durable(next).await {
                        tracing::warn!("kafka produce to {name:?}: {e}");
                        response = failed(a.index, error_code(&e), Some(e.to_string()));
                    }
                }
                responses.push(response);
            }
            topics.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(responses),
            );
        }
        ProduceResponse::default().with_responses(topics)
    }))
}

impl Appended {
    fn error(index: i32, code: i16, message: &str) -> Appended {
        let message = (!message.is_empty()).then(|| message.to_string());
        Appended {
            index,
            response: failed(index, code, message),
            durable: None,
        }
    }
}

fn failed(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_error_message(message.map(str))
}

fn append(
    b: &Broker,
    partition: &Arc<Partition>,
    config: &TopicConfig,
    data: produce_request::PartitionProduceData,
) -> Appended {
    let index = data.index;
    let Some(bytes) = data.records else {
        return Appended::error(index, ResponseError::CorruptMessage.code(), "no records");
    };
    let batches = match decode_batches(bytes) {
        Ok(b) => b,
        Err(e) => {
            let code = match e {
                BatchError::Corrupt(_) => ResponseError::CorruptMessage.code(),
                BatchError::Invalid(_) => ResponseError::InvalidRecord.code(),
                BatchError::UnsupportedCodec(_) => ResponseError::UnsupportedCompressionType.code(),
            };
            return Appended::error(index, code, &e.to_string());
        }
    };
    let topic = partition.topic();
    let p = partition.id();
    // Every batch is checked before any is appended, as Kafka validates a partition's records
    // whole: a request refused leaves nothing of itself in the log.
    for batch in &batches {
        if let Some(refused) = check(config, topic, index, batch) {
            return refused;
        }
    }
    let mut base = None;
    let mut next = 0;
    let mut log_append_time = None;
    for batch in batches {
        let idempotent = batch.producer_id >= 0;
        let seq = BatchSeq {
            producer: batch.producer_id,
            epoch: batch.producer_epoch,
            first: batch.base_sequence,
            last: batch.last_sequence(),
        };
        if idempotent {
            match b.producers.check(seq, topic, p) {
                Sequenced::Append => {}
                Sequenced::Duplicate(offset) => {
                    base.get_or_insert(offset);
                    continue;
                }
                Sequenced::Refuse(code) => return Appended::error(index, code, ""),
            }
        }
        match partition.append_compressed_unacknowledged(&batch.records, batch.codec) {
            Ok(info) => {
                if idempotent {
                    b.producers.appended(seq, topic, p, info.base_offset);
                }
                base.get_or_insert(info.base_offset);
                next = next.max(info.next_offset());
                log_append_time = info.log_append_time.or(log_append_time);
            }
            Err(e) => return Appended::error(index, error_code(&e), &e.to_string()),
        }
    }
    Appended {
        index,
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(base.map_or(-1, |o| o as i64))
            .with_log_append_time_ms(log_append_time.unwrap_or(-1))
            .with_log_start_offset(partition.start_offset() as i64),
        durable: (next > 0).then(|| (partition.clone(), next)),
    }
}

/// Why `batch` cannot be appended to partition `index` of `topic`, as the answer to send.
fn check(config: &TopicConfig, topic: &str, index: i32, batch: &ProducedBatch) -> Option<Appended> {
    let max_batch = config.max_message_bytes;
    let problem = if batch.size as u64 > max_batch {
        Some((
            ResponseError::MessageTooLarge.code(),
            format!(
                "batch of {} bytes exceeds max.message.bytes ({max_batch})",
                batch.size
            ),
        ))
    } else if batch.control {
        Some((
            ResponseError::InvalidRecord.code(),
            "producers may not write control batches".to_string(),
        ))
    } else if batch.transactional {
        Some((
            ResponseError::InvalidTxnState.code(),
            "transactional batches are not supported".to_string(),
        ))
    } else {
        None
    };
    if let Some((code, message)) = problem {
        return Some(Appended::error(index, code, &message));
    }
    // A compacted topic needs a key on every record. As Kafka does (KIP-467), the batch is
    // refused with the index of each keyless record, so the producer fails just those and
    // retries the rest.
    if !config.compact {
        return None;
    }
    let keyless: Vec<_> = batch
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| {
            produce_response::BatchIndexAndErrorMessage::default()
                .with_batch_index(i as i32)
                .with_batch_index_error_message(Some(str(
                    "Compacted topic cannot accept message without key.",
                )))
        })
        .collect();
    if keyless.is_empty() {
        return None;
    }
    let message = format!(
        "{} of the batch's records have no key, which compacted topic {topic} needs",
        keyless.len()
    );
    Some(Appended {
        index,
        response: failed(index, ResponseError::InvalidRecord.code(), Some(message))
            .with_record_errors(keyless),
        durable: None,
    })
}

pub(crate) fn init_producer_id(
    b: &Arc<Broker>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        // Transactions are not served (the transaction APIs are not advertised either).
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(b.producers.allocate()))
        .with_producer_epoch(0)
}
