//! The Kafka wire server: framing, request headers, version negotiation and one
//! handler file per API family. Handlers translate between the protocol's
//! messages and the `broker`; they never touch sled.

pub mod admin;
pub mod api_versions;
pub mod fetch;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod server;
pub mod zero_copy;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

/// The APIs this broker serves and the version range of each. Every range is
/// within what kafka-protocol's request *and* response types encode and decode.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The supported version range of an API, if it is served at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Kafka error codes used by the handlers.
pub mod code {
    use kafka_protocol::ResponseError as E;
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
    pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
    pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
    pub const MESSAGE_TOO_LARGE: i16 = E::MessageTooLarge.code();
    pub const INVALID_TOPIC_EXCEPTION: i16 = E::InvalidTopicException.code();
    pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
    pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
    pub const TOPIC_ALREADY_EXISTS: i16 = E::TopicAlreadyExists.code();
    pub const INVALID_PARTITIONS: i16 = E::InvalidPartitions.code();
    pub const INVALID_REPLICATION_FACTOR: i16 = E::InvalidReplicationFactor.code();
    pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
    pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = E::UnsupportedForMessageFormat.code();
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = E::OutOfOrderSequenceNumber.code();
    pub const INVALID_PRODUCER_EPOCH: i16 = E::InvalidProducerEpoch.code();
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
        E::TransactionalIdAuthorizationFailed.code();
    pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = E::InvalidFetchSessionEpoch.code();
    pub const INVALID_RECORD: i16 = E::InvalidRecord.code();
    pub const RESOURCE_NOT_FOUND: i16 = E::ResourceNotFound.code();
    pub const FENCED_LEADER_EPOCH: i16 = E::FencedLeaderEpoch.code();
    pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();
    pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = E::NotEnoughReplicasAfterAppend.code();
    pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
    pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();
    pub const UNKNOWN_LEADER_EPOCH: i16 = E::UnknownLeaderEpoch.code();
    // Group coordinator.
    pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
    pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
    pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
    pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
    pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
    pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
    pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
    pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
    pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
    pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
    pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
    pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();
}

/// Map a topic error to its Kafka code.
pub fn topic_error_code(e: &crate::broker::TopicError) -> i16 {
    use crate::broker::TopicError as T;
    match e {
        T::AlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        T::Unknown(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        T::InvalidName(..) => code::INVALID_TOPIC_EXCEPTION,
        T::InvalidPartitions(_) => code::INVALID_PARTITIONS,
        T::InvalidReplicationFactor(..) => code::INVALID_REPLICATION_FACTOR,
        T::Unavailable(_) => code::REQUEST_TIMED_OUT,
        T::InvalidConfig(_) => code::INVALID_CONFIG,
        T::Storage(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// Check a client's idea of the leader epoch against ours (KIP-320):
/// -1 means "no idea". Older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
pub fn leader_epoch_error(requested: i32, current: i32) -> i16 {
    if requested < 0 || requested == current {
        code::NONE
    } else if requested < current {
        code::FENCED_LEADER_EPOCH
    } else {
        code::UNKNOWN_LEADER_EPOCH
    }
}

/// NONE when this node may answer for `log` (on one node: always; in a
/// cluster: when it leads the partition), checked against the client's
/// leader epoch; else the error to answer with.
pub fn partition_epoch_error(
    broker: &crate::broker::Broker,
    log: &crate::log::PartitionLog,
    requested: i32,
) -> i16 {
    match broker.replicas() {
        Some(rm) => rm.leader_error(&log.topic, log.partition, requested),
        None => leader_epoch_error(requested, log.leader_epoch()),
    }
}

/// A `StrBytes` from an owned string.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
