//! Fetch and ListOffsets.
//!
//! A fetch returns, per partition, whole stored batches from the one that holds the fetch
//! offset (so its first records may lie below it; clients skip them), up to the partition's
//! `partition_max_bytes` and the request's `max_bytes`, but always at least one batch for the
//! first partition with data, as Kafka does (KIP-74), so a batch larger than the limits is
//! never stuck. A batch is compressed as the topic's `compression.type` says, which by default
//! is as its producer sent it.
//!
//! What is served ends at the partition's acknowledged end: records the fsync policy has made
//! durable (so nothing a consumer has seen can vanish in a crash), up to the log's end offset,
//! which is the last stable offset: records of an Eddy query's transaction are served once it
//! commits, never if it aborts. So `read_committed` and `read_uncommitted` consumers see the
//! same records, and the high watermark and last stable offset reported are that end. Where only aborted records lie between a consumer's
//! position and the end, it gets an abort marker (a control batch) at the last of them, which
//! it skips, moving its position past them.
//!
//! A fetch that finds fewer than `min_bytes` waits for appends to any topic until it has
//! enough or `max_wait_ms` has passed, then answers with what there is.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use eddy_log::{LogError, ReadLimits};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::records::{encode_abort_marker, encode_batch};
use crate::{error_code, Broker};

/// The longest a fetch waits, whatever it asks: a client's request timeout is longer.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn fetch(b: Arc<Broker>, req: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        let seen = b.log.activity();
        let (response, bytes, failed, unacknowledged) = read(&b, &req);
        if bytes >= min_bytes.max(1) || failed || Instant::now() >= deadline {
            return response;
        }
        // New records wake the fetch; so does the acknowledgement of records already written
        // (a group commit's fsync), which appends nothing.
        let acknowledged = async {
            match unacknowledged {
                Some((partition, end)) => partition.wait_durable(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = b.log.activity_after(seen) => {}
            _ = acknowledged => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One pass over the requested partitions: the response, its record bytes, whether a partition
/// failed (which answers at once), and a partition with records written but not yet
/// acknowledged, with its end (to wait on).
fn read(
    b: &Broker,
    req: &FetchRequest,
) -> (
    FetchResponse,
    usize,
    bool,
    Option<(Arc<eddy_log::Partition>, u64)>,
) {
    let mut unacknowledged = None;
    let mut left = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut failed = false;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = b.log.topic(t.topic.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let data = PartitionData::default().with_partition_index(p.partition);
                    let partition = match &topic {
                        Ok(topic) => u32::try_from(p.partition)
                            .ok()
                            .and_then(|i| topic.partition(i).ok().cloned()),
                        Err(_) => None,
                    };
                    let Some(partition) = partition else {
                        failed = true;
                        return data
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_high_watermark(-1);
                    };
                    let codec = topic.as_ref().ok().and_then(|t| t.config().compression);
                    let end = partition.acknowledged_end();
                    if unacknowledged.is_none() && partition.end_offset() > end {
                        unacknowledged = Some((partition.clone(), partition.end_offset()));
                    }
                    let data = data
                        .with_high_watermark(end as i64)
                        .with_last_stable_offset(end as i64)
                        .with_log_start_offset(partition.start_offset() as i64);
                    let offset = match u64::try_from(p.fetch_offset) {
                        Ok(o) => o,
                        Err(_) => {
                            failed = true;
                            return data.with_error_code(ResponseError::OffsetOutOfRange.code());
                        }
                    };
                    // Nothing to serve yet (past the acknowledged end but within the written
                    // end is no error: the records are on their way to the disk). After the
                    // first data, a partition gets only what the request has left.
                    if (end..=partition.end_offset()).contains(&offset) || (left == 0 && total > 0)
                    {
                        return data;
                    }
                    let limit = (p.partition_max_bytes.max(1) as usize).min(left.max(1));
                    match partition.read_batches(offset, limit) {
                        Ok(read) => {
                            let mut out = BytesMut::new();
                            for batch in &read.batches {
                                encode_batch(&mut out, batch, codec.unwrap_or(batch.format.codec));
                            }
                            if read.batches.is_empty() && read.next > offset {
                                encode_abort_marker(&mut out, read.next - 1, eddy_log::now_ms());
                            }
                            total += out.len();
                            left = left.saturating_sub(out.len());
                            data.with_records(Some(out.freeze()))
                        }
                        Err(e) => {
                            failed = true;
                            if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                                tracing::warn!("kafka fetch: {e}");
                            }
                            data.with_error_code(error_code(&e))
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (
        FetchResponse::default().with_responses(topics),
        total,
        failed,
        unacknowledged,
    )
}

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(crate) fn list_offsets(b: &Arc<Broker>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = b.log.topic(t.name.as_str()).ok();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let partition = topic.as_ref().and_then(|topic| {
                        u32::try_from(p.partition_index)
                            .ok()
                            .and_then(|i| topic.partition(i).ok().cloned())
                    });
                    let Some(partition) = partition else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let found = match p.timestamp {
                        LATEST => Ok(Some((-1, partition.acknowledged_end()))),
                        EARLIEST => Ok(Some((-1, partition.start_offset()))),
                        MAX_TIMESTAMP => match partition.max_timestamp() {
                            Some(ts) => at_or_after(&partition, ts),
                            None => Ok(None),
                        },
                        ts if ts >= 0 => at_or_after(&partition, ts),
                        ts => {
                            return response
                                .with_error_code(ResponseError::InvalidRequest.code())
                                .with_offset(ts)
                        }
                    };
                    match found {
                        Ok(Some((ts, offset))) => {
                            response.with_timestamp(ts).with_offset(offset as i64)
                        }
                        // No record that late: Kafka's "unknown" offset and timestamp.
                        Ok(None) => response.with_timestamp(-1).with_offset(-1),
                        Err(e) => response.with_error_code(error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The first readable record with a timestamp at or after `ts`: its timestamp and offset.
fn at_or_after(partition: &eddy_log::Partition, ts: i64) -> Result<Option<(i64, u64)>, LogError> {
    let Some(mut offset) = partition.offset_for_timestamp(ts)? else {
        return Ok(None);
    };
    let limits = ReadLimits {
        max_records: 64,
        max_bytes: 1 << 16,
    };
    // The index points at the first record at or after `ts` by offset; a later record may be
    // older (timestamps need not grow), so look on for one that qualifies.
    while offset < partition.end_offset() {
        let read = partition.read_on(offset.max(partition.start_offset()), limits)?;
        if let Some(r) = read.records.iter().find(|r| r.record.timestamp >= ts) {
            return Ok(Some((r.record.timestamp, r.offset)));
        }
        if read.next <= offset {
            break;
        }
        offset = read.next;
    }
    Ok(None)
}
