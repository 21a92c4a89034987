//! The wire layout of every request message this broker decodes, at every
//! version it serves: which fields each structure has in which versions, and
//! the size of the structure the decoder builds from it (taken from
//! kafka-protocol's own types, so it follows the codec).
//!
//! The layouts are Kafka's message definitions. Strings, bytes and arrays are
//! compact, and every structure ends with tagged fields, from the message's
//! first flexible version on. `prescan`'s tests check every layout against
//! the codec: bytes generated from a layout must decode and encode back to
//! the same bytes, at every supported version.
//!
//! Must never: name a version the codec cannot decode. Locks: none.

use std::mem::size_of;

use kafka_protocol::messages::*;

/// How one field is encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A fixed number of bytes: integers, booleans, UUIDs.
    Fixed(usize),
    /// A string, nullable or not (decoded as a slice of the frame, no copy).
    Str,
    /// Bytes, nullable or not (a slice of the frame, no copy).
    Bytes,
    /// An array of 8-bit integers.
    Int8s,
    /// An array of 32-bit integers.
    Int32s,
    /// An array of 64-bit integers.
    Int64s,
    /// An array of strings.
    Strs,
    /// An array of structures.
    Structs(&'static Schema),
    /// One structure or null: a presence byte (1: present, -1: null), then
    /// the structure. Its decoded size is its parent's (an `Option` inline).
    OptionalStruct(&'static Schema),
    /// One structure held inline by its parent (a tagged field's value).
    Struct(&'static Schema),
}

/// One field and the versions that carry it.
#[derive(Debug)]
pub(crate) struct Field {
    /// kafka-protocol's name for it.
    pub name: &'static str,
    pub kind: Kind,
    pub min_version: i16,
    pub max_version: i16,
}

impl Field {
    pub fn present_in(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }
}

/// One structure: its fields in wire order, the tagged fields the codec
/// decodes into typed fields (any other tag is kept as bytes), and the size
/// of the decoded structure.
#[derive(Debug)]
pub(crate) struct Schema {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [Field],
    pub known_tags: &'static [(u32, Field)],
}

/// A request message: its API, its first flexible version, its body.
#[derive(Debug)]
pub(crate) struct Message {
    pub api: ApiKey,
    pub flexible_from: i16,
    pub body: &'static Schema,
}

impl Message {
    pub fn flexible(&self, version: i16) -> bool {
        version >= self.flexible_from
    }
}

const NEVER: i16 = i16::MAX;
const I8: Kind = Kind::Fixed(1);
const BOOL: Kind = Kind::Fixed(1);
const I16: Kind = Kind::Fixed(2);
const I32: Kind = Kind::Fixed(4);
const I64: Kind = Kind::Fixed(8);
const F64: Kind = Kind::Fixed(8);
const UUID: Kind = Kind::Fixed(16);
const STR: Kind = Kind::Str;
const BYTES: Kind = Kind::Bytes;
const INT8S: Kind = Kind::Int8s;
const INT32S: Kind = Kind::Int32s;
const INT64S: Kind = Kind::Int64s;
const STRS: Kind = Kind::Strs;

/// An array of `schema` structures.
const fn array(schema: &'static Schema) -> Kind {
    Kind::Structs(schema)
}

/// A nullable `schema` structure.
const fn optional(schema: &'static Schema) -> Kind {
    Kind::OptionalStruct(schema)
}

/// A field of every version.
const fn all(name: &'static str, kind: Kind) -> Field {
    between(0, i16::MAX, name, kind)
}

/// A field from `min` on.
const fn since(min: i16, name: &'static str, kind: Kind) -> Field {
    between(min, i16::MAX, name, kind)
}

/// A field up to `max`.
const fn until(max: i16, name: &'static str, kind: Kind) -> Field {
    between(0, max, name, kind)
}

/// A field from `min` to `max`.
const fn between(min: i16, max: i16, name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        min_version: min,
        max_version: max,
    }
}

macro_rules! schema {
    ($ty:ty, [$($field:expr),* $(,)?] $(, tags: [$($tag:expr),*])?) => {
        Schema {
            name: stringify!($ty),
            size: size_of::<$ty>(),
            fields: &[$($field),*],
            known_tags: &[$($($tag),*)?],
        }
    };
}

// -- Produce -------------------------------------------------------------------

static PRODUCE_PARTITION: Schema = schema!(
    produce_request::PartitionProduceData,
    [all("index", I32), all("records", BYTES)]
);
static PRODUCE_TOPIC: Schema = schema!(
    produce_request::TopicProduceData,
    [
        until(12, "name", STR),
        since(13, "topic_id", UUID),
        all("partition_data", array(&PRODUCE_PARTITION)),
    ]
);
static PRODUCE: Schema = schema!(
    ProduceRequest,
    [
        all("transactional_id", STR),
        all("acks", I16),
        all("timeout_ms", I32),
        all("topic_data", array(&PRODUCE_TOPIC)),
    ]
);

// -- Fetch ---------------------------------------------------------------------

static FETCH_PARTITION: Schema = schema!(
    fetch_request::FetchPartition,
    [
        all("partition", I32),
        since(9, "current_leader_epoch", I32),
        all("fetch_offset", I64),
        since(12, "last_fetched_epoch", I32),
        since(5, "log_start_offset", I64),
        all("partition_max_bytes", I32),
    ],
    tags: [
        (0, since(17, "replica_directory_id", UUID)),
        (1, since(18, "high_watermark", I64))
    ]
);
static FETCH_TOPIC: Schema = schema!(
    fetch_request::FetchTopic,
    [
        until(12, "topic", STR),
        since(13, "topic_id", UUID),
        all("partitions", array(&FETCH_PARTITION)),
    ]
);
static FETCH_FORGOTTEN: Schema = schema!(
    fetch_request::ForgottenTopic,
    [
        between(7, 12, "topic", STR),
        since(13, "topic_id", UUID),
        since(7, "partitions", INT32S),
    ]
);
static FETCH_REPLICA_STATE: Schema = schema!(
    fetch_request::ReplicaState,
    [all("replica_id", I32), all("replica_epoch", I64)]
);
static FETCH: Schema = schema!(
    FetchRequest,
    [
        until(14, "replica_id", I32),
        all("max_wait_ms", I32),
        all("min_bytes", I32),
        all("max_bytes", I32),
        all("isolation_level", I8),
        since(7, "session_id", I32),
        since(7, "session_epoch", I32),
        all("topics", array(&FETCH_TOPIC)),
        since(7, "forgotten_topics_data", array(&FETCH_FORGOTTEN)),
        since(11, "rack_id", STR),
    ],
    tags: [
        (0, since(12, "cluster_id", STR)),
        (1, since(15, "replica_state", Kind::Struct(&FETCH_REPLICA_STATE)))
    ]
);

// -- ListOffsets ---------------------------------------------------------------

static LIST_OFFSETS_PARTITION: Schema = schema!(
    list_offsets_request::ListOffsetsPartition,
    [
        all("partition_index", I32),
        since(4, "current_leader_epoch", I32),
        all("timestamp", I64),
    ]
);
static LIST_OFFSETS_TOPIC: Schema = schema!(
    list_offsets_request::ListOffsetsTopic,
    [
        all("name", STR),
        all("partitions", array(&LIST_OFFSETS_PARTITION)),
    ]
);
static LIST_OFFSETS: Schema = schema!(
    ListOffsetsRequest,
    [
        all("replica_id", I32),
        since(2, "isolation_level", I8),
        all("topics", array(&LIST_OFFSETS_TOPIC)),
        since(10, "timeout_ms", I32),
    ]
);

// -- Metadata ------------------------------------------------------------------

static METADATA_TOPIC: Schema = schema!(
    metadata_request::MetadataRequestTopic,
    [since(10, "topic_id", UUID), all("name", STR)]
);
static METADATA: Schema = schema!(
    MetadataRequest,
    [
        all("topics", array(&METADATA_TOPIC)),
        since(4, "allow_auto_topic_creation", BOOL),
        between(8, 10, "include_cluster_authorized_operations", BOOL),
        since(8, "include_topic_authorized_operations", BOOL),
    ]
);

// -- ApiVersions ---------------------------------------------------------------

static API_VERSIONS: Schema = schema!(
    ApiVersionsRequest,
    [
        since(3, "client_software_name", STR),
        since(3, "client_software_version", STR),
    ]
);

// -- CreateTopics --------------------------------------------------------------

static CREATE_TOPICS_ASSIGNMENT: Schema = schema!(
    create_topics_request::CreatableReplicaAssignment,
    [all("partition_index", I32), all("broker_ids", INT32S)]
);
static CREATE_TOPICS_CONFIG: Schema = schema!(
    create_topics_request::CreatableTopicConfig,
    [all("name", STR), all("value", STR)]
);
static CREATE_TOPICS_TOPIC: Schema = schema!(
    create_topics_request::CreatableTopic,
    [
        all("name", STR),
        all("num_partitions", I32),
        all("replication_factor", I16),
        all("assignments", array(&CREATE_TOPICS_ASSIGNMENT)),
        all("configs", array(&CREATE_TOPICS_CONFIG)),
    ]
);
static CREATE_TOPICS: Schema = schema!(
    CreateTopicsRequest,
    [
        all("topics", array(&CREATE_TOPICS_TOPIC)),
        all("timeout_ms", I32),
        all("validate_only", BOOL),
    ]
);

// -- DeleteTopics --------------------------------------------------------------

static DELETE_TOPICS_STATE: Schema = schema!(
    delete_topics_request::DeleteTopicState,
    [since(6, "name", STR), since(6, "topic_id", UUID)]
);
static DELETE_TOPICS: Schema = schema!(
    DeleteTopicsRequest,
    [
        since(6, "topics", array(&DELETE_TOPICS_STATE)),
        until(5, "topic_names", STRS),
        all("timeout_ms", I32),
    ]
);

// -- DeleteRecords -------------------------------------------------------------

static DELETE_RECORDS_PARTITION: Schema = schema!(
    delete_records_request::DeleteRecordsPartition,
    [all("partition_index", I32), all("offset", I64)]
);
static DELETE_RECORDS_TOPIC: Schema = schema!(
    delete_records_request::DeleteRecordsTopic,
    [
        all("name", STR),
        all("partitions", array(&DELETE_RECORDS_PARTITION)),
    ]
);
static DELETE_RECORDS: Schema = schema!(
    DeleteRecordsRequest,
    [
        all("topics", array(&DELETE_RECORDS_TOPIC)),
        all("timeout_ms", I32),
    ]
);

// -- InitProducerId ------------------------------------------------------------

static INIT_PRODUCER_ID: Schema = schema!(
    InitProducerIdRequest,
    [
        all("transactional_id", STR),
        all("transaction_timeout_ms", I32),
        since(3, "producer_id", I64),
        since(3, "producer_epoch", I16),
    ]
);

// -- OffsetForLeaderEpoch ------------------------------------------------------

static OFFSET_FOR_LEADER_PARTITION: Schema = schema!(
    offset_for_leader_epoch_request::OffsetForLeaderPartition,
    [
        all("partition", I32),
        all("current_leader_epoch", I32),
        all("leader_epoch", I32),
    ]
);
static OFFSET_FOR_LEADER_TOPIC: Schema = schema!(
    offset_for_leader_epoch_request::OffsetForLeaderTopic,
    [
        all("topic", STR),
        all("partitions", array(&OFFSET_FOR_LEADER_PARTITION)),
    ]
);
static OFFSET_FOR_LEADER_EPOCH: Schema = schema!(
    OffsetForLeaderEpochRequest,
    [
        since(3, "replica_id", I32),
        all("topics", array(&OFFSET_FOR_LEADER_TOPIC)),
    ]
);

// -- DescribeConfigs -----------------------------------------------------------

static DESCRIBE_CONFIGS_RESOURCE: Schema = schema!(
    describe_configs_request::DescribeConfigsResource,
    [
        all("resource_type", I8),
        all("resource_name", STR),
        all("configuration_keys", STRS),
    ]
);
static DESCRIBE_CONFIGS: Schema = schema!(
    DescribeConfigsRequest,
    [
        all("resources", array(&DESCRIBE_CONFIGS_RESOURCE)),
        all("include_synonyms", BOOL),
        since(3, "include_documentation", BOOL),
    ]
);

// -- AlterConfigs --------------------------------------------------------------

static ALTER_CONFIGS_CONFIG: Schema = schema!(
    alter_configs_request::AlterableConfig,
    [all("name", STR), all("value", STR)]
);
static ALTER_CONFIGS_RESOURCE: Schema = schema!(
    alter_configs_request::AlterConfigsResource,
    [
        all("resource_type", I8),
        all("resource_name", STR),
        all("configs", array(&ALTER_CONFIGS_CONFIG)),
    ]
);
static ALTER_CONFIGS: Schema = schema!(
    AlterConfigsRequest,
    [
        all("resources", array(&ALTER_CONFIGS_RESOURCE)),
        all("validate_only", BOOL),
    ]
);

// -- CreatePartitions ----------------------------------------------------------

static CREATE_PARTITIONS_ASSIGNMENT: Schema = schema!(
    create_partitions_request::CreatePartitionsAssignment,
    [all("broker_ids", INT32S)]
);
static CREATE_PARTITIONS_TOPIC: Schema = schema!(
    create_partitions_request::CreatePartitionsTopic,
    [
        all("name", STR),
        all("count", I32),
        all("assignments", array(&CREATE_PARTITIONS_ASSIGNMENT)),
    ]
);
static CREATE_PARTITIONS: Schema = schema!(
    CreatePartitionsRequest,
    [
        all("topics", array(&CREATE_PARTITIONS_TOPIC)),
        all("timeout_ms", I32),
        all("validate_only", BOOL),
    ]
);

// -- IncrementalAlterConfigs ---------------------------------------------------

static INCREMENTAL_ALTER_CONFIGS_CONFIG: Schema = schema!(
    incremental_alter_configs_request::AlterableConfig,
    [
        all("name", STR),
        all("config_operation", I8),
        all("value", STR),
    ]
);
static INCREMENTAL_ALTER_CONFIGS_RESOURCE: Schema = schema!(
    incremental_alter_configs_request::AlterConfigsResource,
    [
        all("resource_type", I8),
        all("resource_name", STR),
        all("configs", array(&INCREMENTAL_ALTER_CONFIGS_CONFIG)),
    ]
);
static INCREMENTAL_ALTER_CONFIGS: Schema = schema!(
    IncrementalAlterConfigsRequest,
    [
        all("resources", array(&INCREMENTAL_ALTER_CONFIGS_RESOURCE)),
        all("validate_only", BOOL),
    ]
);

// -- DescribeCluster -----------------------------------------------------------

static DESCRIBE_CLUSTER: Schema = schema!(
    DescribeClusterRequest,
    [
        all("include_cluster_authorized_operations", BOOL),
        since(1, "endpoint_type", I8),
        since(2, "include_fenced_brokers", BOOL),
    ]
);

// -- FindCoordinator -----------------------------------------------------------

static FIND_COORDINATOR: Schema = schema!(
    FindCoordinatorRequest,
    [
        until(3, "key", STR),
        since(1, "key_type", I8),
        since(4, "coordinator_keys", STRS),
    ]
);

// -- JoinGroup -----------------------------------------------------------------

static JOIN_GROUP_PROTOCOL: Schema = schema!(
    join_group_request::JoinGroupRequestProtocol,
    [all("name", STR), all("metadata", BYTES)]
);
static JOIN_GROUP: Schema = schema!(
    JoinGroupRequest,
    [
        all("group_id", STR),
        all("session_timeout_ms", I32),
        since(1, "rebalance_timeout_ms", I32),
        all("member_id", STR),
        since(5, "group_instance_id", STR),
        all("protocol_type", STR),
        all("protocols", array(&JOIN_GROUP_PROTOCOL)),
        since(8, "reason", STR),
    ]
);

// -- SyncGroup -----------------------------------------------------------------

static SYNC_GROUP_ASSIGNMENT: Schema = schema!(
    sync_group_request::SyncGroupRequestAssignment,
    [all("member_id", STR), all("assignment", BYTES)]
);
static SYNC_GROUP: Schema = schema!(
    SyncGroupRequest,
    [
        all("group_id", STR),
        all("generation_id", I32),
        all("member_id", STR),
        since(3, "group_instance_id", STR),
        since(5, "protocol_type", STR),
        since(5, "protocol_name", STR),
        all("assignments", array(&SYNC_GROUP_ASSIGNMENT)),
    ]
);

// -- Heartbeat -----------------------------------------------------------------

static HEARTBEAT: Schema = schema!(
    HeartbeatRequest,
    [
        all("group_id", STR),
        all("generation_id", I32),
        all("member_id", STR),
        since(3, "group_instance_id", STR),
    ]
);

// -- LeaveGroup ----------------------------------------------------------------

static LEAVE_GROUP_MEMBER: Schema = schema!(
    leave_group_request::MemberIdentity,
    [
        since(3, "member_id", STR),
        since(3, "group_instance_id", STR),
        since(5, "reason", STR),
    ]
);
static LEAVE_GROUP: Schema = schema!(
    LeaveGroupRequest,
    [
        all("group_id", STR),
        until(2, "member_id", STR),
        since(3, "members", array(&LEAVE_GROUP_MEMBER)),
    ]
);

// -- DescribeGroups, ListGroups, DeleteGroups ----------------------------------

static DESCRIBE_GROUPS: Schema = schema!(
    DescribeGroupsRequest,
    [
        all("groups", STRS),
        since(3, "include_authorized_operations", BOOL),
    ]
);
static LIST_GROUPS: Schema = schema!(
    ListGroupsRequest,
    [
        since(4, "states_filter", STRS),
        since(5, "types_filter", STRS),
    ]
);
static DELETE_GROUPS: Schema = schema!(DeleteGroupsRequest, [all("groups_names", STRS)]);

// -- OffsetCommit --------------------------------------------------------------

static OFFSET_COMMIT_PARTITION: Schema = schema!(
    offset_commit_request::OffsetCommitRequestPartition,
    [
        all("partition_index", I32),
        all("committed_offset", I64),
        since(6, "committed_leader_epoch", I32),
        all("committed_metadata", STR),
    ]
);
static OFFSET_COMMIT_TOPIC: Schema = schema!(
    offset_commit_request::OffsetCommitRequestTopic,
    [
        all("name", STR),
        all("partitions", array(&OFFSET_COMMIT_PARTITION)),
    ]
);
static OFFSET_COMMIT: Schema = schema!(
    OffsetCommitRequest,
    [
        all("group_id", STR),
        all("generation_id_or_member_epoch", I32),
        all("member_id", STR),
        since(7, "group_instance_id", STR),
        until(4, "retention_time_ms", I64),
        all("topics", array(&OFFSET_COMMIT_TOPIC)),
    ]
);

// -- OffsetFetch ---------------------------------------------------------------

static OFFSET_FETCH_TOPIC: Schema = schema!(
    offset_fetch_request::OffsetFetchRequestTopic,
    [until(7, "name", STR), until(7, "partition_indexes", INT32S),]
);
static OFFSET_FETCH_GROUP_TOPIC: Schema = schema!(
    offset_fetch_request::OffsetFetchRequestTopics,
    [since(8, "name", STR), since(8, "partition_indexes", INT32S),]
);
static OFFSET_FETCH_GROUP: Schema = schema!(
    offset_fetch_request::OffsetFetchRequestGroup,
    [
        since(8, "group_id", STR),
        since(9, "member_id", STR),
        since(9, "member_epoch", I32),
        since(8, "topics", array(&OFFSET_FETCH_GROUP_TOPIC)),
    ]
);
static OFFSET_FETCH: Schema = schema!(
    OffsetFetchRequest,
    [
        until(7, "group_id", STR),
        until(7, "topics", array(&OFFSET_FETCH_TOPIC)),
        since(8, "groups", array(&OFFSET_FETCH_GROUP)),
        since(7, "require_stable", BOOL),
    ]
);

// -- OffsetDelete --------------------------------------------------------------

static OFFSET_DELETE_PARTITION: Schema = schema!(
    offset_delete_request::OffsetDeleteRequestPartition,
    [all("partition_index", I32)]
);
static OFFSET_DELETE_TOPIC: Schema = schema!(
    offset_delete_request::OffsetDeleteRequestTopic,
    [
        all("name", STR),
        all("partitions", array(&OFFSET_DELETE_PARTITION)),
    ]
);
static OFFSET_DELETE: Schema = schema!(
    OffsetDeleteRequest,
    [
        all("group_id", STR),
        all("topics", array(&OFFSET_DELETE_TOPIC)),
    ]
);

// -- SaslHandshake, SaslAuthenticate --------------------------------------------

static SASL_HANDSHAKE: Schema = schema!(SaslHandshakeRequest, [all("mechanism", STR)]);
static SASL_AUTHENTICATE: Schema = schema!(SaslAuthenticateRequest, [all("auth_bytes", BYTES)]);

// -- DescribeUserScramCredentials, AlterUserScramCredentials --------------------

static SCRAM_USER_NAME: Schema = schema!(
    describe_user_scram_credentials_request::UserName,
    [all("name", STR)]
);
static DESCRIBE_USER_SCRAM_CREDENTIALS: Schema = schema!(
    DescribeUserScramCredentialsRequest,
    [all("users", array(&SCRAM_USER_NAME))]
);
static SCRAM_CREDENTIAL_DELETION: Schema = schema!(
    alter_user_scram_credentials_request::ScramCredentialDeletion,
    [all("name", STR), all("mechanism", I8)]
);
static SCRAM_CREDENTIAL_UPSERTION: Schema = schema!(
    alter_user_scram_credentials_request::ScramCredentialUpsertion,
    [
        all("name", STR),
        all("mechanism", I8),
        all("iterations", I32),
        all("salt", BYTES),
        all("salted_password", BYTES),
    ]
);
static ALTER_USER_SCRAM_CREDENTIALS: Schema = schema!(
    AlterUserScramCredentialsRequest,
    [
        all("deletions", array(&SCRAM_CREDENTIAL_DELETION)),
        all("upsertions", array(&SCRAM_CREDENTIAL_UPSERTION)),
    ]
);

// -- DescribeAcls, CreateAcls, DeleteAcls ---------------------------------------

static ACL_CREATION: Schema = schema!(
    create_acls_request::AclCreation,
    [
        all("resource_type", I8),
        all("resource_name", STR),
        all("resource_pattern_type", I8),
        all("principal", STR),
        all("host", STR),
        all("operation", I8),
        all("permission_type", I8),
    ]
);
static CREATE_ACLS: Schema = schema!(CreateAclsRequest, [all("creations", array(&ACL_CREATION))]);
static DESCRIBE_ACLS: Schema = schema!(
    DescribeAclsRequest,
    [
        all("resource_type_filter", I8),
        all("resource_name_filter", STR),
        all("pattern_type_filter", I8),
        all("principal_filter", STR),
        all("host_filter", STR),
        all("operation", I8),
        all("permission_type", I8),
    ]
);
static DELETE_ACLS_FILTER: Schema = schema!(
    delete_acls_request::DeleteAclsFilter,
    [
        all("resource_type_filter", I8),
        all("resource_name_filter", STR),
        all("pattern_type_filter", I8),
        all("principal_filter", STR),
        all("host_filter", STR),
        all("operation", I8),
        all("permission_type", I8),
    ]
);
static DELETE_ACLS: Schema = schema!(
    DeleteAclsRequest,
    [all("filters", array(&DELETE_ACLS_FILTER))]
);

// -- DescribeClientQuotas, AlterClientQuotas --------------------------------------

static QUOTA_COMPONENT: Schema = schema!(
    describe_client_quotas_request::ComponentData,
    [
        all("entity_type", STR),
        all("match_type", I8),
        all("match", STR),
    ]
);
static DESCRIBE_CLIENT_QUOTAS: Schema = schema!(
    DescribeClientQuotasRequest,
    [
        all("components", array(&QUOTA_COMPONENT)),
        all("strict", BOOL),
    ]
);
static QUOTA_ENTITY: Schema = schema!(
    alter_client_quotas_request::EntityData,
    [all("entity_type", STR), all("entity_name", STR)]
);
static QUOTA_OP: Schema = schema!(
    alter_client_quotas_request::OpData,
    [all("key", STR), all("value", F64), all("remove", BOOL)]
);
static QUOTA_ENTRY: Schema = schema!(
    alter_client_quotas_request::EntryData,
    [
        all("entity", array(&QUOTA_ENTITY)),
        all("ops", array(&QUOTA_OP)),
    ]
);
static ALTER_CLIENT_QUOTAS: Schema = schema!(
    AlterClientQuotasRequest,
    [
        all("entries", array(&QUOTA_ENTRY)),
        all("validate_only", BOOL),
    ]
);

// -- ConsumerGroupHeartbeat, ConsumerGroupDescribe (KIP-848) -----------------

static CONSUMER_GROUP_HEARTBEAT_PARTITIONS: Schema = schema!(
    consumer_group_heartbeat_request::TopicPartitions,
    [all("topic_id", UUID), all("partitions", INT32S)]
);
static CONSUMER_GROUP_HEARTBEAT: Schema = schema!(
    ConsumerGroupHeartbeatRequest,
    [
        all("group_id", STR),
        all("member_id", STR),
        all("member_epoch", I32),
        all("instance_id", STR),
        all("rack_id", STR),
        all("rebalance_timeout_ms", I32),
        all("subscribed_topic_names", STRS),
        since(1, "subscribed_topic_regex", STR),
        all("server_assignor", STR),
        all(
            "topic_partitions",
            array(&CONSUMER_GROUP_HEARTBEAT_PARTITIONS)
        ),
    ]
);
static CONSUMER_GROUP_DESCRIBE: Schema = schema!(
    ConsumerGroupDescribeRequest,
    [
        all("group_ids", STRS),
        all("include_authorized_operations", BOOL),
    ]
);

// -- Share groups (KIP-932) ---------------------------------------------------

static SHARE_GROUP_HEARTBEAT: Schema = schema!(
    ShareGroupHeartbeatRequest,
    [
        all("group_id", STR),
        all("member_id", STR),
        all("member_epoch", I32),
        all("rack_id", STR),
        all("subscribed_topic_names", STRS),
    ]
);
static SHARE_GROUP_DESCRIBE: Schema = schema!(
    ShareGroupDescribeRequest,
    [
        all("group_ids", STRS),
        all("include_authorized_operations", BOOL),
    ]
);
static SHARE_FETCH_ACK_BATCH: Schema = schema!(
    share_fetch_request::AcknowledgementBatch,
    [
        all("first_offset", I64),
        all("last_offset", I64),
        all("acknowledge_types", INT8S),
    ]
);
static SHARE_FETCH_PARTITION: Schema = schema!(
    share_fetch_request::FetchPartition,
    [
        all("partition_index", I32),
        all("acknowledgement_batches", array(&SHARE_FETCH_ACK_BATCH)),
    ]
);
static SHARE_FETCH_TOPIC: Schema = schema!(
    share_fetch_request::FetchTopic,
    [
        all("topic_id", UUID),
        all("partitions", array(&SHARE_FETCH_PARTITION)),
    ]
);
static SHARE_FETCH_FORGOTTEN: Schema = schema!(
    share_fetch_request::ForgottenTopic,
    [all("topic_id", UUID), all("partitions", INT32S)]
);
static SHARE_FETCH: Schema = schema!(
    ShareFetchRequest,
    [
        all("group_id", STR),
        all("member_id", STR),
        all("share_session_epoch", I32),
        all("max_wait_ms", I32),
        all("min_bytes", I32),
        all("max_bytes", I32),
        all("max_records", I32),
        all("batch_size", I32),
        all("topics", array(&SHARE_FETCH_TOPIC)),
        all("forgotten_topics_data", array(&SHARE_FETCH_FORGOTTEN)),
    ]
);
static SHARE_ACKNOWLEDGE_BATCH: Schema = schema!(
    share_acknowledge_request::AcknowledgementBatch,
    [
        all("first_offset", I64),
        all("last_offset", I64),
        all("acknowledge_types", INT8S),
    ]
);
static SHARE_ACKNOWLEDGE_PARTITION: Schema = schema!(
    share_acknowledge_request::AcknowledgePartition,
    [
        all("partition_index", I32),
        all("acknowledgement_batches", array(&SHARE_ACKNOWLEDGE_BATCH)),
    ]
);
static SHARE_ACKNOWLEDGE_TOPIC: Schema = schema!(
    share_acknowledge_request::AcknowledgeTopic,
    [
        all("topic_id", UUID),
        all("partitions", array(&SHARE_ACKNOWLEDGE_PARTITION)),
    ]
);
static SHARE_ACKNOWLEDGE: Schema = schema!(
    ShareAcknowledgeRequest,
    [
        all("group_id", STR),
        all("member_id", STR),
        all("share_session_epoch", I32),
        all("topics", array(&SHARE_ACKNOWLEDGE_TOPIC)),
    ]
);

static DESCRIBE_SHARE_OFFSETS_TOPIC: Schema = schema!(
    describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic,
    [all("topic_name", STR), all("partitions", INT32S)]
);
static DESCRIBE_SHARE_OFFSETS_GROUP: Schema = schema!(
    describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup,
    [
        all("group_id", STR),
        all("topics", array(&DESCRIBE_SHARE_OFFSETS_TOPIC)),
    ]
);
static DESCRIBE_SHARE_OFFSETS: Schema = schema!(
    DescribeShareGroupOffsetsRequest,
    [all("groups", array(&DESCRIBE_SHARE_OFFSETS_GROUP))]
);
static ALTER_SHARE_OFFSETS_PARTITION: Schema = schema!(
    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition,
    [all("partition_index", I32), all("start_offset", I64)]
);
static ALTER_SHARE_OFFSETS_TOPIC: Schema = schema!(
    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic,
    [
        all("topic_name", STR),
        all("partitions", array(&ALTER_SHARE_OFFSETS_PARTITION)),
    ]
);
static ALTER_SHARE_OFFSETS: Schema = schema!(
    AlterShareGroupOffsetsRequest,
    [
        all("group_id", STR),
        all("topics", array(&ALTER_SHARE_OFFSETS_TOPIC)),
    ]
);
static DELETE_SHARE_OFFSETS_TOPIC: Schema = schema!(
    delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic,
    [all("topic_name", STR)]
);
static DELETE_SHARE_OFFSETS: Schema = schema!(
    DeleteShareGroupOffsetsRequest,
    [
        all("group_id", STR),
        all("topics", array(&DELETE_SHARE_OFFSETS_TOPIC)),
    ]
);

// -- Transactions --------------------------------------------------------------

static ADD_PARTITIONS_TO_TXN_TOPIC: Schema = schema!(
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    [all("name", STR), all("partitions", INT32S)]
);
static ADD_PARTITIONS_TO_TXN_TRANSACTION: Schema = schema!(
    add_partitions_to_txn_request::AddPartitionsToTxnTransaction,
    [
        all("transactional_id", STR),
        all("producer_id", I64),
        all("producer_epoch", I16),
        all("verify_only", BOOL),
        all("topics", array(&ADD_PARTITIONS_TO_TXN_TOPIC)),
    ]
);
static ADD_PARTITIONS_TO_TXN: Schema = schema!(
    AddPartitionsToTxnRequest,
    [
        since(4, "transactions", array(&ADD_PARTITIONS_TO_TXN_TRANSACTION)),
        until(3, "v3_and_below_transactional_id", STR),
        until(3, "v3_and_below_producer_id", I64),
        until(3, "v3_and_below_producer_epoch", I16),
        until(
            3,
            "v3_and_below_topics",
            array(&ADD_PARTITIONS_TO_TXN_TOPIC)
        ),
    ]
);
static ADD_OFFSETS_TO_TXN: Schema = schema!(
    AddOffsetsToTxnRequest,
    [
        all("transactional_id", STR),
        all("producer_id", I64),
        all("producer_epoch", I16),
        all("group_id", STR),
    ]
);
static END_TXN: Schema = schema!(
    EndTxnRequest,
    [
        all("transactional_id", STR),
        all("producer_id", I64),
        all("producer_epoch", I16),
        all("committed", BOOL),
    ]
);
static TXN_OFFSET_COMMIT_PARTITION: Schema = schema!(
    txn_offset_commit_request::TxnOffsetCommitRequestPartition,
    [
        all("partition_index", I32),
        all("committed_offset", I64),
        since(2, "committed_leader_epoch", I32),
        all("committed_metadata", STR),
    ]
);
static TXN_OFFSET_COMMIT_TOPIC: Schema = schema!(
    txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    [
        all("name", STR),
        all("partitions", array(&TXN_OFFSET_COMMIT_PARTITION)),
    ]
);
static TXN_OFFSET_COMMIT: Schema = schema!(
    TxnOffsetCommitRequest,
    [
        all("transactional_id", STR),
        all("group_id", STR),
        all("producer_id", I64),
        all("producer_epoch", I16),
        since(3, "generation_id", I32),
        since(3, "member_id", STR),
        since(3, "group_instance_id", STR),
        all("topics", array(&TXN_OFFSET_COMMIT_TOPIC)),
    ]
);
static DESCRIBE_TRANSACTIONS: Schema = schema!(
    DescribeTransactionsRequest,
    [all("transactional_ids", STRS)]
);
static LIST_TRANSACTIONS: Schema = schema!(
    ListTransactionsRequest,
    [
        all("state_filters", STRS),
        all("producer_id_filters", INT64S),
        since(1, "duration_filter", I64),
        since(2, "transactional_id_pattern", STR),
    ]
);
// -- WriteTxnMarkers, DescribeProducers (transactions, partition side) --------

static WRITE_TXN_MARKER_TOPIC: Schema = schema!(
    write_txn_markers_request::WritableTxnMarkerTopic,
    [all("name", STR), all("partition_indexes", INT32S)]
);
static WRITE_TXN_MARKER: Schema = schema!(
    write_txn_markers_request::WritableTxnMarker,
    [
        all("producer_id", I64),
        all("producer_epoch", I16),
        all("transaction_result", BOOL),
        all("topics", array(&WRITE_TXN_MARKER_TOPIC)),
        all("coordinator_epoch", I32),
    ]
);
static WRITE_TXN_MARKERS: Schema = schema!(
    WriteTxnMarkersRequest,
    [all("markers", array(&WRITE_TXN_MARKER))]
);
static DESCRIBE_PRODUCERS_TOPIC: Schema = schema!(
    describe_producers_request::TopicRequest,
    [all("name", STR), all("partition_indexes", INT32S)]
);
static DESCRIBE_PRODUCERS: Schema = schema!(
    DescribeProducersRequest,
    [all("topics", array(&DESCRIBE_PRODUCERS_TOPIC))]
);
// -- AlterPartitionReassignments, ListPartitionReassignments, UnregisterBroker ----

static REASSIGNABLE_PARTITION: Schema = schema!(
    alter_partition_reassignments_request::ReassignablePartition,
    [all("partition_index", I32), all("replicas", INT32S)]
);
static REASSIGNABLE_TOPIC: Schema = schema!(
    alter_partition_reassignments_request::ReassignableTopic,
    [
        all("name", STR),
        all("partitions", array(&REASSIGNABLE_PARTITION)),
    ]
);
static ALTER_PARTITION_REASSIGNMENTS: Schema = schema!(
    AlterPartitionReassignmentsRequest,
    [
        all("timeout_ms", I32),
        since(1, "allow_replication_factor_change", BOOL),
        all("topics", array(&REASSIGNABLE_TOPIC)),
    ]
);
static LIST_REASSIGNMENTS_TOPIC: Schema = schema!(
    list_partition_reassignments_request::ListPartitionReassignmentsTopics,
    [all("name", STR), all("partition_indexes", INT32S)]
);
static LIST_PARTITION_REASSIGNMENTS: Schema = schema!(
    ListPartitionReassignmentsRequest,
    [
        all("timeout_ms", I32),
        all("topics", array(&LIST_REASSIGNMENTS_TOPIC)),
    ]
);
static UNREGISTER_BROKER: Schema = schema!(UnregisterBrokerRequest, [all("broker_id", I32)]);

// -- DescribeTopicPartitions, DescribeLogDirs, AlterReplicaLogDirs, ----------
// -- ElectLeaders, DescribeQuorum, ListConfigResources -----------------------

static DESCRIBE_TOPIC_PARTITIONS_TOPIC: Schema = schema!(
    describe_topic_partitions_request::TopicRequest,
    [all("name", STR)]
);
static DESCRIBE_TOPIC_PARTITIONS_CURSOR: Schema = schema!(
    describe_topic_partitions_request::Cursor,
    [all("topic_name", STR), all("partition_index", I32)]
);
static DESCRIBE_TOPIC_PARTITIONS: Schema = schema!(
    DescribeTopicPartitionsRequest,
    [
        all("topics", array(&DESCRIBE_TOPIC_PARTITIONS_TOPIC)),
        all("response_partition_limit", I32),
        all("cursor", optional(&DESCRIBE_TOPIC_PARTITIONS_CURSOR)),
    ]
);
static DESCRIBABLE_LOG_DIR_TOPIC: Schema = schema!(
    describe_log_dirs_request::DescribableLogDirTopic,
    [all("topic", STR), all("partitions", INT32S)]
);
static DESCRIBE_LOG_DIRS: Schema = schema!(
    DescribeLogDirsRequest,
    [all("topics", array(&DESCRIBABLE_LOG_DIR_TOPIC))]
);
static ALTER_REPLICA_LOG_DIR_TOPIC: Schema = schema!(
    alter_replica_log_dirs_request::AlterReplicaLogDirTopic,
    [all("name", STR), all("partitions", INT32S)]
);
static ALTER_REPLICA_LOG_DIR: Schema = schema!(
    alter_replica_log_dirs_request::AlterReplicaLogDir,
    [
        all("path", STR),
        all("topics", array(&ALTER_REPLICA_LOG_DIR_TOPIC)),
    ]
);
static ALTER_REPLICA_LOG_DIRS: Schema = schema!(
    AlterReplicaLogDirsRequest,
    [all("dirs", array(&ALTER_REPLICA_LOG_DIR))]
);
static ELECT_LEADERS_TOPIC: Schema = schema!(
    elect_leaders_request::TopicPartitions,
    [all("topic", STR), all("partitions", INT32S)]
);
static ELECT_LEADERS: Schema = schema!(
    ElectLeadersRequest,
    [
        since(1, "election_type", I8),
        all("topic_partitions", array(&ELECT_LEADERS_TOPIC)),
        all("timeout_ms", I32),
    ]
);
static DESCRIBE_QUORUM_PARTITION: Schema = schema!(
    describe_quorum_request::PartitionData,
    [all("partition_index", I32)]
);
static DESCRIBE_QUORUM_TOPIC: Schema = schema!(
    describe_quorum_request::TopicData,
    [
        all("topic_name", STR),
        all("partitions", array(&DESCRIBE_QUORUM_PARTITION)),
    ]
);
static DESCRIBE_QUORUM: Schema = schema!(
    DescribeQuorumRequest,
    [all("topics", array(&DESCRIBE_QUORUM_TOPIC))]
);
static LIST_CONFIG_RESOURCES: Schema = schema!(
    ListConfigResourcesRequest,
    [since(1, "resource_types", INT8S)]
);

/// Every request message the broker decodes.
pub(crate) static MESSAGES: &[Message] = &[
    message(ApiKey::Produce, 9, &PRODUCE),
    message(ApiKey::Fetch, 12, &FETCH),
    message(ApiKey::ListOffsets, 6, &LIST_OFFSETS),
    message(ApiKey::Metadata, 9, &METADATA),
    message(ApiKey::ApiVersions, 3, &API_VERSIONS),
    message(ApiKey::CreateTopics, 5, &CREATE_TOPICS),
    message(ApiKey::DeleteTopics, 4, &DELETE_TOPICS),
    message(ApiKey::DeleteRecords, 2, &DELETE_RECORDS),
    message(ApiKey::InitProducerId, 2, &INIT_PRODUCER_ID),
    message(ApiKey::OffsetForLeaderEpoch, 4, &OFFSET_FOR_LEADER_EPOCH),
    message(ApiKey::DescribeConfigs, 4, &DESCRIBE_CONFIGS),
    message(ApiKey::AlterConfigs, 2, &ALTER_CONFIGS),
    message(ApiKey::CreatePartitions, 2, &CREATE_PARTITIONS),
    message(
        ApiKey::IncrementalAlterConfigs,
        1,
        &INCREMENTAL_ALTER_CONFIGS,
    ),
    message(ApiKey::DescribeCluster, 0, &DESCRIBE_CLUSTER),
    message(ApiKey::FindCoordinator, 3, &FIND_COORDINATOR),
    message(ApiKey::JoinGroup, 6, &JOIN_GROUP),
    message(ApiKey::SyncGroup, 4, &SYNC_GROUP),
    message(ApiKey::Heartbeat, 4, &HEARTBEAT),
    message(ApiKey::LeaveGroup, 4, &LEAVE_GROUP),
    message(ApiKey::DescribeGroups, 5, &DESCRIBE_GROUPS),
    message(ApiKey::ListGroups, 3, &LIST_GROUPS),
    message(ApiKey::DeleteGroups, 2, &DELETE_GROUPS),
    message(ApiKey::OffsetCommit, 8, &OFFSET_COMMIT),
    message(ApiKey::OffsetFetch, 6, &OFFSET_FETCH),
    message(ApiKey::OffsetDelete, NEVER, &OFFSET_DELETE),
    message(ApiKey::SaslHandshake, NEVER, &SASL_HANDSHAKE),
    message(ApiKey::SaslAuthenticate, 2, &SASL_AUTHENTICATE),
    message(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DESCRIBE_USER_SCRAM_CREDENTIALS,
    ),
    message(
        ApiKey::AlterUserScramCredentials,
        0,
        &ALTER_USER_SCRAM_CREDENTIALS,
    ),
    message(ApiKey::DescribeAcls, 2, &DESCRIBE_ACLS),
    message(ApiKey::CreateAcls, 2, &CREATE_ACLS),
    message(ApiKey::DeleteAcls, 2, &DELETE_ACLS),
    message(ApiKey::DescribeClientQuotas, 1, &DESCRIBE_CLIENT_QUOTAS),
    message(ApiKey::AlterClientQuotas, 1, &ALTER_CLIENT_QUOTAS),
    message(ApiKey::ConsumerGroupHeartbeat, 0, &CONSUMER_GROUP_HEARTBEAT),
    message(ApiKey::ConsumerGroupDescribe, 0, &CONSUMER_GROUP_DESCRIBE),
    message(ApiKey::AddPartitionsToTxn, 3, &ADD_PARTITIONS_TO_TXN),
    message(ApiKey::AddOffsetsToTxn, 3, &ADD_OFFSETS_TO_TXN),
    message(ApiKey::EndTxn, 3, &END_TXN),
    message(ApiKey::TxnOffsetCommit, 3, &TXN_OFFSET_COMMIT),
    message(ApiKey::DescribeTransactions, 0, &DESCRIBE_TRANSACTIONS),
    message(ApiKey::ListTransactions, 0, &LIST_TRANSACTIONS),
    message(ApiKey::WriteTxnMarkers, 1, &WRITE_TXN_MARKERS),
    message(ApiKey::DescribeProducers, 0, &DESCRIBE_PRODUCERS),
    message(
        ApiKey::AlterPartitionReassignments,
        0,
        &ALTER_PARTITION_REASSIGNMENTS,
    ),
    message(
        ApiKey::ListPartitionReassignments,
        0,
        &LIST_PARTITION_REASSIGNMENTS,
    ),
    message(ApiKey::UnregisterBroker, 0, &UNREGISTER_BROKER),
    message(ApiKey::ShareGroupHeartbeat, 0, &SHARE_GROUP_HEARTBEAT),
    message(ApiKey::ShareGroupDescribe, 0, &SHARE_GROUP_DESCRIBE),
    message(ApiKey::ShareFetch, 0, &SHARE_FETCH),
    message(ApiKey::ShareAcknowledge, 0, &SHARE_ACKNOWLEDGE),
    message(
        ApiKey::DescribeShareGroupOffsets,
        0,
        &DESCRIBE_SHARE_OFFSETS,
    ),
    message(ApiKey::AlterShareGroupOffsets, 0, &ALTER_SHARE_OFFSETS),
    message(ApiKey::DeleteShareGroupOffsets, 0, &DELETE_SHARE_OFFSETS),
    message(
        ApiKey::DescribeTopicPartitions,
        0,
        &DESCRIBE_TOPIC_PARTITIONS,
    ),
    message(ApiKey::DescribeLogDirs, 2, &DESCRIBE_LOG_DIRS),
    message(ApiKey::AlterReplicaLogDirs, 2, &ALTER_REPLICA_LOG_DIRS),
    message(ApiKey::ElectLeaders, 2, &ELECT_LEADERS),
    message(ApiKey::DescribeQuorum, 0, &DESCRIBE_QUORUM),
    message(ApiKey::ListConfigResources, 0, &LIST_CONFIG_RESOURCES),
];

const fn message(api: ApiKey, flexible_from: i16, body: &'static Schema) -> Message {
    Message {
        api,
        flexible_from,
        body,
    }
}

/// The layout of an API's request message.
pub(crate) fn message_of(api: ApiKey) -> Option<&'static Message> {
    MESSAGES.iter().find(|m| m.api == api)
}
