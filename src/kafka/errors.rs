//! The one place where typed errors of the layers below become Kafka error
//! codes (and, where clients get one, an error message).
//!
//! Owns: the mapping of `TopicError`, `AppendError`, `ReplicaError`,
//! `PartitionError` and `CoordinatorError` to codes. Must never: decide
//! anything (the layers below did). Locks: none.

use super::code;
use crate::broker::{SecurityError, TopicError};
use crate::group::{CoordinatorError, Outcome};
use crate::log::batch::BatchError;
use crate::log::AppendError;
use crate::partition::{LogDirError, PartitionError, TxnVerifyError};
use crate::replication::{ElectionError, ReassignError, ReplicaError};

/// The code of a topic error.
pub fn topic_error_code(e: &TopicError) -> i16 {
    use TopicError as T;
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

/// The code of a refused append.
pub fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Batch(BatchError::Corrupt(_)) => code::CORRUPT_MESSAGE,
        AppendError::Batch(BatchError::UnsupportedMagic(_)) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        AppendError::Batch(BatchError::InvalidRecord(_)) => code::INVALID_RECORD,
        AppendError::Batch(BatchError::TooLarge { .. }) => code::MESSAGE_TOO_LARGE,
        AppendError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        AppendError::Storage(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// The code of a leadership or replication error.
pub fn replica_error_code(e: &ReplicaError) -> i16 {
    match e {
        ReplicaError::NotLeaderOrFollower => code::NOT_LEADER_OR_FOLLOWER,
        ReplicaError::FencedLeaderEpoch => code::FENCED_LEADER_EPOCH,
        ReplicaError::UnknownLeaderEpoch => code::UNKNOWN_LEADER_EPOCH,
        ReplicaError::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        ReplicaError::NotEnoughReplicasAfterAppend => code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ReplicaError::RequestTimedOut => code::REQUEST_TIMED_OUT,
    }
}

/// The code of an election not held (ElectLeaders).
pub fn election_error_code(e: &ElectionError) -> i16 {
    match e {
        ElectionError::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        ElectionError::NotNeeded => code::ELECTION_NOT_NEEDED,
        ElectionError::PreferredLeaderNotAvailable(_) => code::PREFERRED_LEADER_NOT_AVAILABLE,
        ElectionError::EligibleLeadersNotAvailable => code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ElectionError::Unavailable(_) => code::REQUEST_TIMED_OUT,
    }
}

/// The code of a replica not moved to a log directory (AlterReplicaLogDirs).
pub fn log_dir_error_code(e: &LogDirError) -> i16 {
    match e {
        LogDirError::NotFound(..) => code::LOG_DIR_NOT_FOUND,
        LogDirError::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        LogDirError::NotHosted => code::NOT_LEADER_OR_FOLLOWER,
        LogDirError::Storage(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// The code and message of a refused reassignment or broker removal.
pub fn reassign_error(e: &ReassignError) -> (i16, String) {
    use ReassignError as R;
    let code = match e {
        R::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        R::InvalidReplicaAssignment(_) => code::INVALID_REPLICA_ASSIGNMENT,
        R::NoReassignmentInProgress => code::NO_REASSIGNMENT_IN_PROGRESS,
        R::InvalidReplicationFactor(_) => code::INVALID_REPLICATION_FACTOR,
        R::BrokerNotRegistered(_) => code::BROKER_ID_NOT_REGISTERED,
        R::InvalidRequest(_) => code::INVALID_REQUEST,
        R::Unavailable(_) => code::REQUEST_TIMED_OUT,
    };
    (code, e.to_string())
}

/// The code of a partition's error, and the message clients are given
/// with it (as Kafka gives one for refused topics and batches).
pub fn partition_error(e: &PartitionError) -> (i16, Option<String>) {
    use PartitionError as P;
    match e {
        P::InvalidRequiredAcks => (code::INVALID_REQUIRED_ACKS, None),
        P::Topic(t) => (topic_error_code(t), Some(t.to_string())),
        P::InternalTopic(_) => (code::INVALID_TOPIC_EXCEPTION, Some(e.to_string())),
        P::UnknownTopicOrPartition => (code::UNKNOWN_TOPIC_OR_PARTITION, None),
        P::InconsistentTopicId => (code::INCONSISTENT_TOPIC_ID, None),
        P::Replica(r) => (replica_error_code(r), None),
        P::NotEnoughReplicas { .. } => (code::NOT_ENOUGH_REPLICAS, None),
        P::Append(a) => (append_error_code(a), Some(a.to_string())),
        P::OffsetOutOfRange { .. } => (code::OFFSET_OUT_OF_RANGE, None),
        P::Read(_) => (code::KAFKA_STORAGE_ERROR, None),
        P::InvalidTimestamp(_) => (code::INVALID_REQUEST, None),
        P::Flush(message) => (code::KAFKA_STORAGE_ERROR, Some(message.clone())),
        P::Txn(t) => (txn_verify_error_code(t), Some(t.to_string())),
    }
}

/// The code of a transactional batch the coordinator refused (KIP-890).
pub fn txn_verify_error_code(e: &TxnVerifyError) -> i16 {
    match e {
        TxnVerifyError::NotCoordinator => code::NOT_COORDINATOR,
        TxnVerifyError::CoordinatorLoading => code::COORDINATOR_LOAD_IN_PROGRESS,
        TxnVerifyError::ProducerFenced => code::PRODUCER_FENCED,
        TxnVerifyError::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
        TxnVerifyError::NotInTransaction => code::INVALID_TXN_STATE,
        // Retriable for every client, as Kafka answers a produce request
        // that came while the previous transaction's markers are written.
        TxnVerifyError::ConcurrentTransactions => code::NOT_ENOUGH_REPLICAS,
    }
}

/// The code of a group coordinator error.
pub fn coordinator_error_code(e: &CoordinatorError) -> i16 {
    use CoordinatorError as C;
    match e {
        C::NotCoordinator => code::NOT_COORDINATOR,
        C::CoordinatorNotAvailable => code::COORDINATOR_NOT_AVAILABLE,
        C::IllegalGeneration => code::ILLEGAL_GENERATION,
        C::InconsistentGroupProtocol => code::INCONSISTENT_GROUP_PROTOCOL,
        C::InvalidGroupId => code::INVALID_GROUP_ID,
        C::UnknownMemberId => code::UNKNOWN_MEMBER_ID,
        C::InvalidSessionTimeout => code::INVALID_SESSION_TIMEOUT,
        C::RebalanceInProgress => code::REBALANCE_IN_PROGRESS,
        C::NonEmptyGroup => code::NON_EMPTY_GROUP,
        C::GroupIdNotFound => code::GROUP_ID_NOT_FOUND,
        C::MemberIdRequired => code::MEMBER_ID_REQUIRED,
        C::FencedInstanceId => code::FENCED_INSTANCE_ID,
        C::GroupSubscribedToTopic => code::GROUP_SUBSCRIBED_TO_TOPIC,
        C::OffsetMetadataTooLarge => code::OFFSET_METADATA_TOO_LARGE,
        C::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        C::RequestTimedOut => code::REQUEST_TIMED_OUT,
        C::FencedMemberEpoch => code::FENCED_MEMBER_EPOCH,
        C::UnreleasedInstanceId => code::UNRELEASED_INSTANCE_ID,
        C::UnsupportedAssignor => code::UNSUPPORTED_ASSIGNOR,
        C::StaleMemberEpoch => code::STALE_MEMBER_EPOCH,
        C::InvalidRequest => code::INVALID_REQUEST,
        C::InvalidRegularExpression => code::INVALID_REGULAR_EXPRESSION,
        C::InvalidRecordState => code::INVALID_RECORD_STATE,
        C::ShareSessionNotFound => code::SHARE_SESSION_NOT_FOUND,
        C::InvalidShareSessionEpoch => code::INVALID_SHARE_SESSION_EPOCH,
        C::UnknownTopicId => code::UNKNOWN_TOPIC_ID,
        C::NotLeaderOrFollower => code::NOT_LEADER_OR_FOLLOWER,
    }
}

/// `code::NONE` for Ok, else the coordinator error's code.
pub fn outcome_code(o: &Outcome) -> i16 {
    o.as_ref().err().map_or(code::NONE, coordinator_error_code)
}

/// The code of a refused credential change (DescribeUserScramCredentials,
/// AlterUserScramCredentials).
pub fn credential_error_code(e: &crate::broker::SecurityError) -> i16 {
    use crate::broker::SecurityError as S;
    match e {
        S::Rejected(_) => code::UNACCEPTABLE_CREDENTIAL,
        S::Storage(_) => code::KAFKA_STORAGE_ERROR,
        S::Unavailable(_) => code::REQUEST_TIMED_OUT,
    }
}

/// The code and message of a security change that was not made.
pub fn security_error(e: &SecurityError) -> (i16, String) {
    let code = match e {
        SecurityError::Rejected(_) => code::INVALID_REQUEST,
        SecurityError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        SecurityError::Unavailable(_) => code::REQUEST_TIMED_OUT,
    };
    (code, e.to_string())
}

/// The code and message of one item of a security change: refused on its
/// own (`invalid`), failed with the whole change (`failure`), or made.
pub fn change_outcome(
    invalid: Option<String>,
    failure: Option<&(i16, String)>,
) -> (i16, Option<String>) {
    match (invalid, failure) {
        (Some(message), _) => (code::INVALID_REQUEST, Some(message)),
        (None, Some((error, message))) => (*error, Some(message.clone())),
        (None, None) => (code::NONE, None),
    }
}

/// The code of a transaction coordinator error.
pub fn txn_error_code(e: &crate::txn::TxnError) -> i16 {
    use crate::txn::TxnError as T;
    match e {
        T::NotCoordinator => code::NOT_COORDINATOR,
        T::CoordinatorNotAvailable => code::COORDINATOR_NOT_AVAILABLE,
        T::ConcurrentTransactions => code::CONCURRENT_TRANSACTIONS,
        T::ProducerFenced => code::PRODUCER_FENCED,
        T::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
        T::InvalidProducerIdMapping => code::INVALID_PRODUCER_ID_MAPPING,
        T::InvalidTxnState => code::INVALID_TXN_STATE,
        T::InvalidTransactionTimeout => code::INVALID_TRANSACTION_TIMEOUT,
        T::InvalidRequest => code::INVALID_REQUEST,
        T::RequestTimedOut => code::REQUEST_TIMED_OUT,
        T::Storage => code::KAFKA_STORAGE_ERROR,
        T::TransactionalIdNotFound => code::TRANSACTIONAL_ID_NOT_FOUND,
    }
}

/// `code::NONE` for Ok, else the transaction error's code.
pub fn txn_outcome_code(o: &Result<(), crate::txn::TxnError>) -> i16 {
    o.as_ref().err().map_or(code::NONE, txn_error_code)
}
