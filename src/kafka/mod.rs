//! The Kafka wire server: framing, request headers, version negotiation
//! (`server`, with its `HANDLERS` table) and one handler file per API family.
//! A handler maps a request to one call into the layer below (`partition`,
//! `group`) and the result back to a response; `errors` turns the layers'
//! typed errors into the codes of `code`, the one place where codes appear.
//! Before a request is decoded, `prescan` checks its lengths and estimates
//! its decoded size, and `budget` (the node's `queued.max.request.bytes`)
//! bounds the memory of the requests in flight.
//!
//! Must never: hold broker policy (checks, waits, replication), or touch
//! sled. Locks: none of its own.

pub(crate) mod acls;
pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod authz;
pub(crate) mod budget;
pub(crate) mod code;
pub(crate) mod config_resources;
pub(crate) mod configs;
pub(crate) mod consumer_group;
pub(crate) mod elections;
pub(crate) mod errors;
pub(crate) mod fetch;
pub(crate) mod group;
pub(crate) mod listener;
pub(crate) mod log_dirs;
pub(crate) mod metadata;
pub(crate) mod offsets;
pub(crate) mod prescan;
pub(crate) mod produce;
pub(crate) mod quorum;
pub(crate) mod quotas;
pub(crate) mod reassignments;
pub(crate) mod sasl;
pub(crate) mod server;
pub(crate) mod share_group;
pub(crate) mod topic_partitions;
pub(crate) mod txn;
pub(crate) mod txn_markers;
pub(crate) mod users;
pub(crate) mod zero_copy;

pub use errors::topic_error_code;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

/// The APIs this broker serves and the version range of each. Every range is
/// within what kafka-protocol's request *and* response types encode and decode.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
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
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ListConfigResources, 0, 1),
];

/// The supported version range of an API, if it is served at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// A `StrBytes` from an owned string.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

// The leaf module's numbers are Kafka's (checked at compile time against the codec).
const _: () = {
    use kafka_protocol::ResponseError as E;
    assert!(code::UNKNOWN_SERVER_ERROR == E::UnknownServerError.code());
    assert!(code::OFFSET_OUT_OF_RANGE == E::OffsetOutOfRange.code());
    assert!(code::CORRUPT_MESSAGE == E::CorruptMessage.code());
    assert!(code::UNKNOWN_TOPIC_OR_PARTITION == E::UnknownTopicOrPartition.code());
    assert!(code::MESSAGE_TOO_LARGE == E::MessageTooLarge.code());
    assert!(code::INVALID_TOPIC_EXCEPTION == E::InvalidTopicException.code());
    assert!(code::INVALID_REQUIRED_ACKS == E::InvalidRequiredAcks.code());
    assert!(code::UNSUPPORTED_VERSION == E::UnsupportedVersion.code());
    assert!(code::TOPIC_ALREADY_EXISTS == E::TopicAlreadyExists.code());
    assert!(code::INVALID_PARTITIONS == E::InvalidPartitions.code());
    assert!(code::INVALID_REPLICATION_FACTOR == E::InvalidReplicationFactor.code());
    assert!(code::INVALID_REPLICA_ASSIGNMENT == E::InvalidReplicaAssignment.code());
    assert!(code::NO_REASSIGNMENT_IN_PROGRESS == E::NoReassignmentInProgress.code());
    assert!(code::BROKER_ID_NOT_REGISTERED == E::BrokerIdNotRegistered.code());
    assert!(code::INVALID_CONFIG == E::InvalidConfig.code());
    assert!(code::INVALID_REQUEST == E::InvalidRequest.code());
    assert!(code::UNSUPPORTED_FOR_MESSAGE_FORMAT == E::UnsupportedForMessageFormat.code());
    assert!(code::OUT_OF_ORDER_SEQUENCE_NUMBER == E::OutOfOrderSequenceNumber.code());
    assert!(code::INVALID_PRODUCER_EPOCH == E::InvalidProducerEpoch.code());
    assert!(code::INVALID_TXN_STATE == E::InvalidTxnState.code());
    assert!(code::PRODUCER_FENCED == E::ProducerFenced.code());
    assert!(
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED == E::TransactionalIdAuthorizationFailed.code()
    );
    assert!(code::TOPIC_AUTHORIZATION_FAILED == E::TopicAuthorizationFailed.code());
    assert!(code::GROUP_AUTHORIZATION_FAILED == E::GroupAuthorizationFailed.code());
    assert!(code::CLUSTER_AUTHORIZATION_FAILED == E::ClusterAuthorizationFailed.code());
    assert!(code::KAFKA_STORAGE_ERROR == E::KafkaStorageError.code());
    assert!(code::FETCH_SESSION_ID_NOT_FOUND == E::FetchSessionIdNotFound.code());
    assert!(code::INVALID_FETCH_SESSION_EPOCH == E::InvalidFetchSessionEpoch.code());
    assert!(code::INVALID_RECORD == E::InvalidRecord.code());
    assert!(code::RESOURCE_NOT_FOUND == E::ResourceNotFound.code());
    assert!(code::FENCED_LEADER_EPOCH == E::FencedLeaderEpoch.code());
    assert!(code::NOT_LEADER_OR_FOLLOWER == E::NotLeaderOrFollower.code());
    assert!(code::NOT_ENOUGH_REPLICAS == E::NotEnoughReplicas.code());
    assert!(code::NOT_ENOUGH_REPLICAS_AFTER_APPEND == E::NotEnoughReplicasAfterAppend.code());
    assert!(code::REQUEST_TIMED_OUT == E::RequestTimedOut.code());
    assert!(code::LEADER_NOT_AVAILABLE == E::LeaderNotAvailable.code());
    assert!(code::UNKNOWN_LEADER_EPOCH == E::UnknownLeaderEpoch.code());
    assert!(code::OFFSET_METADATA_TOO_LARGE == E::OffsetMetadataTooLarge.code());
    assert!(code::COORDINATOR_LOAD_IN_PROGRESS == E::CoordinatorLoadInProgress.code());
    assert!(code::COORDINATOR_NOT_AVAILABLE == E::CoordinatorNotAvailable.code());
    assert!(code::NOT_COORDINATOR == E::NotCoordinator.code());
    assert!(code::ILLEGAL_GENERATION == E::IllegalGeneration.code());
    assert!(code::INCONSISTENT_GROUP_PROTOCOL == E::InconsistentGroupProtocol.code());
    assert!(code::INVALID_GROUP_ID == E::InvalidGroupId.code());
    assert!(code::UNKNOWN_MEMBER_ID == E::UnknownMemberId.code());
    assert!(code::INVALID_SESSION_TIMEOUT == E::InvalidSessionTimeout.code());
    assert!(code::REBALANCE_IN_PROGRESS == E::RebalanceInProgress.code());
    assert!(code::NON_EMPTY_GROUP == E::NonEmptyGroup.code());
    assert!(code::GROUP_ID_NOT_FOUND == E::GroupIdNotFound.code());
    assert!(code::MEMBER_ID_REQUIRED == E::MemberIdRequired.code());
    assert!(code::FENCED_INSTANCE_ID == E::FencedInstanceId.code());
    assert!(code::GROUP_SUBSCRIBED_TO_TOPIC == E::GroupSubscribedToTopic.code());
    assert!(code::FENCED_MEMBER_EPOCH == E::FencedMemberEpoch.code());
    assert!(code::UNRELEASED_INSTANCE_ID == E::UnreleasedInstanceId.code());
    assert!(code::UNSUPPORTED_ASSIGNOR == E::UnsupportedAssignor.code());
    assert!(code::STALE_MEMBER_EPOCH == E::StaleMemberEpoch.code());
    assert!(code::INVALID_REGULAR_EXPRESSION == E::InvalidRegularExpression.code());
    assert!(code::UNSUPPORTED_SASL_MECHANISM == E::UnsupportedSaslMechanism.code());
    assert!(code::ILLEGAL_SASL_STATE == E::IllegalSaslState.code());
    assert!(code::SASL_AUTHENTICATION_FAILED == E::SaslAuthenticationFailed.code());
    assert!(code::DUPLICATE_RESOURCE == E::DuplicateResource.code());
    assert!(code::UNACCEPTABLE_CREDENTIAL == E::UnacceptableCredential.code());
    assert!(code::INVALID_TXN_STATE == E::InvalidTxnState.code());
    assert!(code::INVALID_PRODUCER_ID_MAPPING == E::InvalidProducerIdMapping.code());
    assert!(code::INVALID_TRANSACTION_TIMEOUT == E::InvalidTransactionTimeout.code());
    assert!(code::CONCURRENT_TRANSACTIONS == E::ConcurrentTransactions.code());
    assert!(code::OPERATION_NOT_ATTEMPTED == E::OperationNotAttempted.code());
    assert!(code::PRODUCER_FENCED == E::ProducerFenced.code());
    assert!(code::TRANSACTIONAL_ID_NOT_FOUND == E::TransactionalIdNotFound.code());
    assert!(code::UNKNOWN_TOPIC_ID == E::UnknownTopicId.code());
    assert!(code::INCONSISTENT_TOPIC_ID == E::InconsistentTopicId.code());
    assert!(code::INVALID_RECORD_STATE == E::InvalidRecordState.code());
    assert!(code::SHARE_SESSION_NOT_FOUND == E::ShareSessionNotFound.code());
    assert!(code::INVALID_SHARE_SESSION_EPOCH == E::InvalidShareSessionEpoch.code());
    assert!(code::LOG_DIR_NOT_FOUND == E::LogDirNotFound.code());
    assert!(code::PREFERRED_LEADER_NOT_AVAILABLE == E::PreferredLeaderNotAvailable.code());
    assert!(code::ELIGIBLE_LEADERS_NOT_AVAILABLE == E::EligibleLeadersNotAvailable.code());
    assert!(code::ELECTION_NOT_NEEDED == E::ElectionNotNeeded.code());
};
