//! The APIs served and their version ranges.
//!
//! The ranges are those of a Kafka 3.0 broker, raised where the `kafka-protocol` crate no
//! longer decodes the oldest versions (Produce below 3 and Fetch below 4 carry the message
//! formats v0/v1 that Kafka 4 dropped too). Clients such as kafka-python guess the broker's
//! release from the maximum versions, so the ranges must be those of one real release, not a
//! mix. Fetch stops at v12: from v13 on topics are named by id.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// (API, lowest version, highest version).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 11),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
];

/// Whether `version` of `key` is served.
pub fn supports(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|&(k, min, max)| k == key && (min..=max).contains(&version))
}

/// The ApiVersions answer, with `error_code` (0, or UNSUPPORTED_VERSION for a request newer
/// than ours: the client then retries with a version from the list).
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised version must be one the crate can decode and answer.
    #[test]
    fn advertised_versions_are_within_the_crates() {
        fn check<Req: Message, Resp: Message>(key: ApiKey, min: i16, max: i16) {
            let req = Req::VERSIONS;
            let resp = Resp::VERSIONS;
            assert!(
                req.min <= min && max <= req.max && resp.min <= min && max <= resp.max,
                "{key:?} {min}..={max} is outside the crate's {req}/{resp}"
            );
        }
        for &(key, min, max) in SUPPORTED {
            match key {
                ApiKey::Produce => check::<ProduceRequest, ProduceResponse>(key, min, max),
                ApiKey::Fetch => check::<FetchRequest, FetchResponse>(key, min, max),
                ApiKey::ListOffsets => {
                    check::<ListOffsetsRequest, ListOffsetsResponse>(key, min, max)
                }
                ApiKey::Metadata => check::<MetadataRequest, MetadataResponse>(key, min, max),
                ApiKey::OffsetCommit => {
                    check::<OffsetCommitRequest, OffsetCommitResponse>(key, min, max)
                }
                ApiKey::OffsetFetch => {
                    check::<OffsetFetchRequest, OffsetFetchResponse>(key, min, max)
                }
                ApiKey::FindCoordinator => {
                    check::<FindCoordinatorRequest, FindCoordinatorResponse>(key, min, max)
                }
                ApiKey::JoinGroup => check::<JoinGroupRequest, JoinGroupResponse>(key, min, max),
                ApiKey::Heartbeat => check::<HeartbeatRequest, HeartbeatResponse>(key, min, max),
                ApiKey::LeaveGroup => check::<LeaveGroupRequest, LeaveGroupResponse>(key, min, max),
                ApiKey::SyncGroup => check::<SyncGroupRequest, SyncGroupResponse>(key, min, max),
                ApiKey::DescribeGroups => {
                    check::<DescribeGroupsRequest, DescribeGroupsResponse>(key, min, max)
                }
                ApiKey::ListGroups => check::<ListGroupsRequest, ListGroupsResponse>(key, min, max),
                ApiKey::ApiVersions => {
                    check::<ApiVersionsRequest, ApiVersionsResponse>(key, min, max)
                }
                ApiKey::CreateTopics => {
                    check::<CreateTopicsRequest, CreateTopicsResponse>(key, min, max)
                }
                ApiKey::DeleteTopics => {
                    check::<DeleteTopicsRequest, DeleteTopicsResponse>(key, min, max)
                }
                ApiKey::InitProducerId => {
                    check::<InitProducerIdRequest, InitProducerIdResponse>(key, min, max)
                }
                ApiKey::DescribeConfigs => {
                    check::<DescribeConfigsRequest, DescribeConfigsResponse>(key, min, max)
                }
                ApiKey::CreatePartitions => {
                    check::<CreatePartitionsRequest, CreatePartitionsResponse>(key, min, max)
                }
                ApiKey::AlterConfigs => {
                    check::<AlterConfigsRequest, AlterConfigsResponse>(key, min, max)
                }
                ApiKey::IncrementalAlterConfigs => check::<
                    IncrementalAlterConfigsRequest,
                    IncrementalAlterConfigsResponse,
                >(key, min, max),
                other => panic!("{other:?} is advertised but not dispatched"),
            }
        }
    }
}
