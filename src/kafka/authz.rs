//! Authorization at the wire edge: each API's check (Kafka's, per
//! `docs/SECURITY.md`), asked of the authorizer (`security::authorizer`)
//! before the handler calls below. A refused resource is taken out of the
//! request and answered with Kafka's code (TOPIC_, GROUP_, CLUSTER_ or
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED); the rest goes on as before.
//!
//! Must never: change what the layers below decide for allowed resources.
//! Locks: none (the security state is a snapshot).

use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

use super::code;
use crate::broker::Broker;
use crate::security::acls::AclOperation;
use crate::security::authorizer::{Authorizer, Resource};
use crate::security::{Principal, SecurityState};

use AclOperation as Op;

/// What one request may do: the authorizer, who asks from where, and a
/// snapshot of the ACLs (none when the authorizer is off).
pub struct Access<'a> {
    authorizer: Authorizer<'a>,
    principal: &'a Principal,
    host: IpAddr,
    state: Option<Arc<SecurityState>>,
}

impl<'a> Access<'a> {
    pub fn new(broker: &'a Broker, principal: &'a Principal, host: IpAddr) -> Self {
        let authorizer = Authorizer::new(&broker.config);
        let state = authorizer.enabled().then(|| broker.security.current());
        Access {
            authorizer,
            principal,
            host,
            state,
        }
    }

    fn host(&self) -> IpAddr {
        self.host
    }

    pub fn allows(&self, op: AclOperation, resource: Resource<'_>) -> bool {
        match &self.state {
            None => true,
            Some(state) => self
                .authorizer
                .allows(state, self.principal, self.host(), op, resource),
        }
    }

    pub fn topic(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, Resource::topic(name))
    }

    pub fn group(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, Resource::group(name))
    }

    pub fn cluster(&self, op: AclOperation) -> bool {
        self.allows(op, Resource::cluster())
    }

    /// CLUSTER_AUTHORIZATION_FAILED unless `op` is allowed on the cluster.
    pub fn cluster_refused(&self, op: AclOperation) -> Option<i16> {
        (!self.cluster(op)).then_some(code::CLUSTER_AUTHORIZATION_FAILED)
    }

    /// A topic's `authorized_operations` bit field.
    pub fn topic_operations(&self, name: &str) -> i32 {
        self.operations(Resource::topic(name))
    }

    /// The cluster's `authorized_operations` bit field.
    pub fn cluster_operations(&self) -> i32 {
        self.operations(Resource::cluster())
    }

    /// Kafka's `authorized_operations` bit field for `resource`.
    pub fn operations(&self, resource: Resource<'_>) -> i32 {
        let empty = SecurityState::default();
        let state = self.state.as_deref().unwrap_or(&empty);
        let authorizer = if self.state.is_some() {
            self.authorizer
        } else {
            Authorizer::off()
        };
        authorizer.authorized_operations(state, self.principal, self.host(), resource)
    }

    /// Whether an ALLOW for `op` on some topic applies to this principal
    /// (Kafka lets idempotent producers with WRITE on any topic in).
    fn any_topic(&self, op: AclOperation) -> bool {
        match &self.state {
            None => true,
            Some(state) => {
                self.authorizer.is_super_user(self.principal)
                    || crate::security::authorizer::allows_some(
                        state,
                        self.principal,
                        self.host(),
                        op,
                        crate::security::acls::ResourceType::Topic,
                    )
            }
        }
    }
}

/// Take out of `items` those `allowed` refuses, and return them.
fn refuse<T>(items: &mut Vec<T>, allowed: impl Fn(&T) -> bool) -> Vec<T> {
    let (keep, refused) = std::mem::take(items).into_iter().partition(allowed);
    *items = keep;
    refused
}

// -- Produce, Fetch and the offset APIs ------------------------------------------

/// Produce: WRITE on each topic (and on the transactional id); a topic
/// that does not exist yet is auto-created only with CREATE (on the cluster
/// or the topic). Returns the refused topics' responses.
pub fn produce(
    access: &Access<'_>,
    req: &mut ProduceRequest,
    exists: impl Fn(&str) -> bool,
) -> Vec<TopicProduceResponse> {
    let txn_refused = req
        .transactional_id
        .as_ref()
        .filter(|t| !t.0.is_empty())
        .is_some_and(|t| !access.allows(Op::Write, Resource::transactional_id(&t.0)));
    let refusal = |name: &str| {
        if txn_refused {
            Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else if !access.topic(Op::Write, name) {
            Some(code::TOPIC_AUTHORIZATION_FAILED)
        } else if !(access.cluster(Op::Create) || exists(name) || access.topic(Op::Create, name)) {
            Some(code::UNKNOWN_TOPIC_OR_PARTITION)
        } else {
            None
        }
    };
    refuse(&mut req.topic_data, |t| refusal(&t.name.0).is_none())
        .into_iter()
        .map(|t| {
            let error = refusal(&t.name.0).unwrap_or(code::NONE);
            let mut out = TopicProduceResponse::default();
            out.name = t.name;
            out.partition_responses = t
                .partition_data
                .iter()
                .map(|p| {
                    let mut r = PartitionProduceResponse::default();
                    r.index = p.index;
                    r.error_code = error;
                    r.base_offset = -1;
                    r.log_append_time_ms = -1;
                    r.log_start_offset = -1;
                    r
                })
                .collect();
            out
        })
        .collect()
}

/// InitProducerId for an idempotent producer: IDEMPOTENT_WRITE on the
/// cluster or WRITE on some topic (a transactional id: WRITE on it).
pub fn init_producer_id(access: &Access<'_>, req: &InitProducerIdRequest) -> Option<i16> {
    match req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        Some(t) if !access.allows(Op::Write, Resource::transactional_id(&t.0)) => {
            Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
        Some(_) => None,
        None if access.cluster(Op::IdempotentWrite) || access.any_topic(Op::Write) => None,
        None => Some(code::CLUSTER_AUTHORIZATION_FAILED),
    }
}

/// Fetch: a follower (replica id >= 0) needs CLUSTER_ACTION on the cluster,
/// a consumer READ on each topic.
pub fn fetch(access: &Access<'_>, req: &mut FetchRequest) -> Vec<FetchableTopicResponse> {
    let (error, refused) = if req.replica_id.0 >= 0 {
        if access.cluster(Op::ClusterAction) {
            return Vec::new();
        }
        (
            code::CLUSTER_AUTHORIZATION_FAILED,
            std::mem::take(&mut req.topics),
        )
    } else {
        (
            code::TOPIC_AUTHORIZATION_FAILED,
            refuse(&mut req.topics, |t| access.topic(Op::Read, &t.topic.0)),
        )
    };
    refused
        .into_iter()
        .map(|t| {
            let mut out = FetchableTopicResponse::default();
            out.topic = t.topic;
            out.topic_id = t.topic_id;
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut d = PartitionData::default();
                    d.partition_index = p.partition;
                    d.error_code = error;
                    d.high_watermark = -1;
                    d.last_stable_offset = -1;
                    d.log_start_offset = -1;
                    d.preferred_read_replica = BrokerId(-1);
                    d
                })
                .collect();
            out
        })
        .collect()
}

/// ListOffsets: DESCRIBE on each topic.
pub fn list_offsets(
    access: &Access<'_>,
    req: &mut ListOffsetsRequest,
) -> Vec<ListOffsetsTopicResponse> {
    refuse(&mut req.topics, |t| access.topic(Op::Describe, &t.name.0))
        .into_iter()
        .map(|t| {
            let mut out = ListOffsetsTopicResponse::default();
            out.name = t.name;
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default();
                    r.partition_index = p.partition_index;
                    r.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                    r.timestamp = -1;
                    r.offset = -1;
                    r.leader_epoch = -1;
                    r
                })
                .collect();
            out
        })
        .collect()
}

/// OffsetForLeaderEpoch: DESCRIBE on each topic (a follower's: CLUSTER_ACTION).
pub fn offset_for_leader_epoch(
    access: &Access<'_>,
    req: &mut OffsetForLeaderEpochRequest,
) -> Vec<OffsetForLeaderTopicResult> {
    let (error, refused) = if req.replica_id.0 >= 0 && !access.cluster(Op::ClusterAction) {
        (
            code::CLUSTER_AUTHORIZATION_FAILED,
            std::mem::take(&mut req.topics),
        )
    } else {
        (
            code::TOPIC_AUTHORIZATION_FAILED,
            refuse(&mut req.topics, |t| {
                req_is_follower(req.replica_id) || access.topic(Op::Describe, &t.topic.0)
            }),
        )
    };
    refused
        .into_iter()
        .map(|t| {
            let mut out = OffsetForLeaderTopicResult::default();
            out.topic = t.topic;
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default();
                    r.partition = p.partition;
                    r.error_code = error;
                    r.leader_epoch = -1;
                    r.end_offset = -1;
                    r
                })
                .collect();
            out
        })
        .collect()
}

fn req_is_follower(replica_id: BrokerId) -> bool {
    replica_id.0 >= 0
}

/// DeleteRecords: DELETE on each topic.
pub fn delete_records(
    access: &Access<'_>,
    req: &mut DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    refuse(&mut req.topics, |t| access.topic(Op::Delete, &t.name.0))
        .into_iter()
        .map(|t| {
            let mut out = DeleteRecordsTopicResult::default();
            out.name = t.name;
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default();
                    r.partition_index = p.partition_index;
                    r.low_watermark = -1;
                    r.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                    r
                })
                .collect();
            out
        })
        .collect()
}

/// WriteTxnMarkers without CLUSTER_ACTION: every partition refused.
pub fn write_txn_markers_refused(req: &WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let mut resp = WriteTxnMarkersResponse::default();
    for m in &req.markers {
        let mut out = WritableTxnMarkerResult::default();
        out.producer_id = m.producer_id;
        for t in &m.topics {
            let mut topic = WritableTxnMarkerTopicResult::default();
            topic.name = t.name.clone();
            for index in &t.partition_indexes {
                let mut p = WritableTxnMarkerPartitionResult::default();
                p.partition_index = *index;
                p.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
                topic.partitions.push(p);
            }
            out.topics.push(topic);
        }
        resp.markers.push(out);
    }
    resp
}

/// DescribeProducers: READ on each topic.
pub fn describe_producers(
    access: &Access<'_>,
    req: &mut DescribeProducersRequest,
) -> Vec<describe_producers_response::TopicResponse> {
    refuse(&mut req.topics, |t| access.topic(Op::Read, &t.name.0))
        .into_iter()
        .map(|t| {
            let mut out = describe_producers_response::TopicResponse::default();
            out.name = t.name;
            out.partitions = t
                .partition_indexes
                .iter()
                .map(|index| {
                    let mut p = describe_producers_response::PartitionResponse::default();
                    p.partition_index = *index;
                    p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                    p
                })
                .collect();
            out
        })
        .collect()
}

// -- Metadata --------------------------------------------------------------------

/// Metadata, before the handler: requested topics the principal may not
/// DESCRIBE are answered TOPIC_AUTHORIZATION_FAILED, and so is an unknown
/// topic it may not CREATE (on the cluster or the topic) when the request
/// would auto-create it. Returns those answers and the names left to
/// describe (`None`: every topic).
pub fn metadata_request(
    access: &Access<'_>,
    req: &mut MetadataRequest,
    version: i16,
    exists: impl Fn(&str) -> bool,
) -> (Vec<MetadataResponseTopic>, Option<Vec<String>>) {
    let Some(topics) = req
        .topics
        .as_mut()
        .filter(|t| !(t.is_empty() && version == 0))
    else {
        return (Vec::new(), None);
    };
    let may_create_any = access.cluster(Op::Create);
    let auto = version < 4 || req.allow_auto_topic_creation;
    let refused = refuse(topics, |t| {
        t.name.as_ref().is_none_or(|n| {
            access.topic(Op::Describe, &n.0)
                && (!auto || may_create_any || exists(&n.0) || access.topic(Op::Create, &n.0))
        })
    })
    .into_iter()
    .filter_map(|t| t.name)
    .map(|name| {
        let mut out = MetadataResponseTopic::default();
        out.name = Some(name);
        out.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        out.topic_authorized_operations = i32::MIN;
        out
    })
    .collect();
    let allowed = topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    (refused, Some(allowed))
}

/// Metadata, after the handler: only the allowed names are described (a
/// request for every topic shows only those the principal may DESCRIBE,
/// so the others' existence does not leak), the refused ones are added,
/// and the authorized operations (cluster, topics) filled in when asked.
pub fn metadata_response(
    access: &Access<'_>,
    allowed: Option<Vec<String>>,
    (cluster_ops, topic_ops): (bool, bool),
    resp: &mut MetadataResponse,
    refused: Vec<MetadataResponseTopic>,
) {
    resp.topics.retain(|t| {
        t.name.as_ref().is_none_or(|n| match &allowed {
            Some(names) => names.iter().any(|a| a.as_str() == n.0.as_str()),
            None => access.topic(Op::Describe, &n.0),
        })
    });
    if topic_ops {
        for t in resp
            .topics
            .iter_mut()
            .filter(|t| t.error_code == code::NONE)
        {
            if let Some(name) = &t.name {
                t.topic_authorized_operations = access.operations(Resource::topic(&name.0));
            }
        }
    }
    if cluster_ops {
        resp.cluster_authorized_operations = access.cluster_operations();
    }
    resp.topics.extend(refused);
}

// -- Topic administration ---------------------------------------------------------

/// CreateTopics: CREATE on the cluster or on each topic.
pub fn create_topics(
    access: &Access<'_>,
    req: &mut CreateTopicsRequest,
) -> Vec<CreatableTopicResult> {
    if access.cluster(Op::Create) {
        return Vec::new();
    }
    refuse(&mut req.topics, |t| access.topic(Op::Create, &t.name.0))
        .into_iter()
        .map(|t| {
            let mut out = CreatableTopicResult::default();
            out.name = t.name;
            out.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            out.num_partitions = -1;
            out.replication_factor = -1;
            out
        })
        .collect()
}

/// DeleteTopics: DELETE on each topic (a topic named by id alone is
/// refused while the authorizer is on, unless DELETE on every topic).
pub fn delete_topics(
    access: &Access<'_>,
    req: &mut DeleteTopicsRequest,
) -> Vec<DeletableTopicResult> {
    let refused_name = |name: TopicName| {
        let mut out = DeletableTopicResult::default();
        out.name = Some(name);
        out.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        out
    };
    let mut refused: Vec<DeletableTopicResult> =
        refuse(&mut req.topic_names, |n| access.topic(Op::Delete, &n.0))
            .into_iter()
            .map(refused_name)
            .collect();
    refused.extend(
        refuse(&mut req.topics, |t| match &t.name {
            Some(n) => access.topic(Op::Delete, &n.0),
            None => access.topic(Op::Delete, crate::security::acls::WILDCARD),
        })
        .into_iter()
        .map(|t| {
            let mut out = DeletableTopicResult::default();
            out.name = t.name;
            out.topic_id = t.topic_id;
            out.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            out
        }),
    );
    refused
}

/// CreatePartitions: ALTER on each topic.
pub fn create_partitions(
    access: &Access<'_>,
    req: &mut CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    refuse(&mut req.topics, |t| access.topic(Op::Alter, &t.name.0))
        .into_iter()
        .map(|t| {
            let mut out = CreatePartitionsTopicResult::default();
            out.name = t.name;
            out.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            out
        })
        .collect()
}

/// Kafka's config resource types: 2 topic, 4 broker, 8 broker logger, 32 group.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

/// Whether `op` is allowed on a config resource (a topic, a group, or a
/// broker: the cluster), and the code when not.
fn config_resource(access: &Access<'_>, op: AclOperation, kind: i8, name: &str) -> Option<i16> {
    if kind == CONFIG_TOPIC {
        (!access.topic(op, name)).then_some(code::TOPIC_AUTHORIZATION_FAILED)
    } else if kind == CONFIG_GROUP {
        (!access.group(op, name)).then_some(code::GROUP_AUTHORIZATION_FAILED)
    } else {
        (!access.cluster(op)).then_some(code::CLUSTER_AUTHORIZATION_FAILED)
    }
}

/// Take out of `resources` the config resources `op` is refused on and
/// answer each with `answer(resource, code)`.
fn refuse_configs<R, O>(
    access: &Access<'_>,
    op: AclOperation,
    resources: &mut Vec<R>,
    key: impl Fn(&R) -> (i8, &str),
    answer: impl Fn(R, i16) -> O,
) -> Vec<O> {
    let refused_code = |r: &R| {
        let (kind, name) = key(r);
        config_resource(access, op, kind, name)
    };
    refuse(resources, |r| refused_code(r).is_none())
        .into_iter()
        .map(|r| {
            let error = refused_code(&r).unwrap_or(code::NONE);
            answer(r, error)
        })
        .collect()
}

/// The refusal of one config resource as `$result` (each config API has
/// its own result type, with the same fields).
macro_rules! config_refusal {
    ($result:ty) => {
        |r, error| {
            let mut out = <$result>::default();
            out.error_code = error;
            out.resource_type = r.resource_type;
            out.resource_name = r.resource_name;
            out
        }
    };
}

/// DescribeConfigs: DESCRIBE_CONFIGS on each topic, group or the cluster.
pub fn describe_configs(
    access: &Access<'_>,
    req: &mut DescribeConfigsRequest,
) -> Vec<describe_configs_response::DescribeConfigsResult> {
    refuse_configs(
        access,
        Op::DescribeConfigs,
        &mut req.resources,
        |r| (r.resource_type, r.resource_name.as_str()),
        config_refusal!(describe_configs_response::DescribeConfigsResult),
    )
}

/// AlterConfigs: ALTER_CONFIGS on each topic, group or the cluster.
pub fn alter_configs(
    access: &Access<'_>,
    req: &mut AlterConfigsRequest,
) -> Vec<alter_configs_response::AlterConfigsResourceResponse> {
    refuse_configs(
        access,
        Op::AlterConfigs,
        &mut req.resources,
        |r| (r.resource_type, r.resource_name.as_str()),
        config_refusal!(alter_configs_response::AlterConfigsResourceResponse),
    )
}

/// IncrementalAlterConfigs: ALTER_CONFIGS on each topic, group or the cluster.
pub fn incremental_alter_configs(
    access: &Access<'_>,
    req: &mut IncrementalAlterConfigsRequest,
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    refuse_configs(
        access,
        Op::AlterConfigs,
        &mut req.resources,
        |r| (r.resource_type, r.resource_name.as_str()),
        config_refusal!(incremental_alter_configs_response::AlterConfigsResourceResponse),
    )
}

// -- Groups ------------------------------------------------------------------------

/// FindCoordinator, after the handler: DESCRIBE on the group (key type 0)
/// or the transactional id (1), for the one key (v0-3) or each (v4+).
pub fn find_coordinator(
    access: &Access<'_>,
    key_type: i8,
    key: &str,
    resp: &mut FindCoordinatorResponse,
) {
    if let Some(error) =
        coordinator_key(access, key_type, key).filter(|_| resp.coordinators.is_empty())
    {
        resp.error_code = error;
        resp.error_message = None;
        resp.node_id = BrokerId(-1);
        resp.host = Default::default();
        resp.port = -1;
    }
    for c in &mut resp.coordinators {
        if let Some(error) = coordinator_key(access, key_type, &c.key) {
            c.error_code = error;
            c.error_message = None;
            c.node_id = BrokerId(-1);
            c.host = Default::default();
            c.port = -1;
        }
    }
}

fn coordinator_key(access: &Access<'_>, key_type: i8, key: &str) -> Option<i16> {
    if key_type == 1 {
        (!access.allows(Op::Describe, Resource::transactional_id(key)))
            .then_some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else {
        (!access.group(Op::Describe, key)).then_some(code::GROUP_AUTHORIZATION_FAILED)
    }
}

/// JoinGroup, SyncGroup, Heartbeat, LeaveGroup: READ on the group.
pub fn group_read(access: &Access<'_>, group: &str) -> Option<i16> {
    (!access.group(Op::Read, group)).then_some(code::GROUP_AUTHORIZATION_FAILED)
}

/// OffsetCommit: READ on the group (else every partition gets
/// GROUP_AUTHORIZATION_FAILED) and on each topic.
pub fn offset_commit(
    access: &Access<'_>,
    req: &mut OffsetCommitRequest,
) -> Vec<OffsetCommitResponseTopic> {
    let group_ok = access.group(Op::Read, &req.group_id.0);
    let error = if group_ok {
        code::TOPIC_AUTHORIZATION_FAILED
    } else {
        code::GROUP_AUTHORIZATION_FAILED
    };
    refuse(&mut req.topics, |t| {
        group_ok && access.topic(Op::Read, &t.name.0)
    })
    .into_iter()
    .map(|t| {
        let mut out = OffsetCommitResponseTopic::default();
        out.name = t.name;
        out.topic_id = t.topic_id;
        out.partitions = t
            .partitions
            .iter()
            .map(|p| {
                let mut r = OffsetCommitResponsePartition::default();
                r.partition_index = p.partition_index;
                r.error_code = error;
                r
            })
            .collect();
        out
    })
    .collect()
}

/// OffsetFetch's topics the principal may not DESCRIBE: refused when
/// `named` by the request, else left out (v0-7 and v8+ have their own types).
macro_rules! undescribable_offsets {
    ($access:expr, $named:expr, $topics:expr) => {
        $topics.retain(|t| $named || $access.topic(Op::Describe, &t.name.0));
        for t in $topics.iter_mut() {
            if !$access.topic(Op::Describe, &t.name.0) {
                for p in &mut t.partitions {
                    p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
        }
    };
}

/// OffsetFetch, after the handler: DESCRIBE on each group (else the group's
/// error is GROUP_AUTHORIZATION_FAILED and no offsets); a topic the
/// principal may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED when the request
/// named it, and left out when it asked for every topic. `group_v0_7`: the
/// group of a v0-7 request and whether it named topics; `named_v8`: the
/// groups of a v8+ request that named topics.
pub fn offset_fetch(
    access: &Access<'_>,
    group_v0_7: Option<(&str, bool)>,
    named_v8: &[String],
    resp: &mut OffsetFetchResponse,
) {
    if let Some((group, named)) = group_v0_7 {
        if !access.group(Op::Describe, group) {
            resp.topics.clear();
            resp.error_code = code::GROUP_AUTHORIZATION_FAILED;
        }
        undescribable_offsets!(access, named, resp.topics);
    }
    for g in &mut resp.groups {
        if !access.group(Op::Describe, &g.group_id.0) {
            g.topics.clear();
            g.error_code = code::GROUP_AUTHORIZATION_FAILED;
        }
        let named = named_v8.iter().any(|n| n.as_str() == g.group_id.0.as_str());
        undescribable_offsets!(access, named, g.topics);
    }
}

/// DescribeGroups, after the handler: DESCRIBE on each group; the
/// authorized operations filled in when asked.
pub fn describe_groups(access: &Access<'_>, include_ops: bool, resp: &mut DescribeGroupsResponse) {
    for g in &mut resp.groups {
        if !access.group(Op::Describe, &g.group_id.0) {
            let group_id = std::mem::take(&mut g.group_id);
            *g = describe_groups_response::DescribedGroup::default();
            g.group_id = group_id;
            g.error_code = code::GROUP_AUTHORIZATION_FAILED;
            g.authorized_operations = i32::MIN;
        } else if include_ops {
            g.authorized_operations = access.operations(Resource::group(&g.group_id.0));
        }
    }
}

/// ListGroups, after the handler: DESCRIBE on the cluster lists every
/// group, otherwise only the groups the principal may DESCRIBE.
pub fn list_groups(access: &Access<'_>, resp: &mut ListGroupsResponse) {
    if !access.cluster(Op::Describe) {
        resp.groups
            .retain(|g| access.group(Op::Describe, &g.group_id.0));
    }
}

/// DeleteGroups: DELETE on each group.
pub fn delete_groups(
    access: &Access<'_>,
    req: &mut DeleteGroupsRequest,
) -> Vec<delete_groups_response::DeletableGroupResult> {
    refuse(&mut req.groups_names, |g| access.group(Op::Delete, &g.0))
        .into_iter()
        .map(|g| {
            let mut out = delete_groups_response::DeletableGroupResult::default();
            out.group_id = g;
            out.error_code = code::GROUP_AUTHORIZATION_FAILED;
            out
        })
        .collect()
}

/// OffsetDelete: DELETE on the group, READ on each topic.
pub fn offset_delete(
    access: &Access<'_>,
    req: &mut OffsetDeleteRequest,
) -> Result<Vec<offset_delete_response::OffsetDeleteResponseTopic>, i16> {
    if !access.group(Op::Delete, &req.group_id.0) {
        return Err(code::GROUP_AUTHORIZATION_FAILED);
    }
    Ok(
        refuse(&mut req.topics, |t| access.topic(Op::Read, &t.name.0))
            .into_iter()
            .map(|t| {
                let mut out = offset_delete_response::OffsetDeleteResponseTopic::default();
                out.name = t.name;
                out.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut r =
                            offset_delete_response::OffsetDeleteResponsePartition::default();
                        r.partition_index = p.partition_index;
                        r.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                        r
                    })
                    .collect();
                out
            })
            .collect(),
    )
}

// -- Transactions --------------------------------------------------------------

/// WRITE on a transactional id (InitProducerId with one, AddPartitionsToTxn
/// v0-3, AddOffsetsToTxn, EndTxn, TxnOffsetCommit).
pub fn txn_write(access: &Access<'_>, transactional_id: &str) -> Option<i16> {
    (!access.allows(Op::Write, Resource::transactional_id(transactional_id)))
        .then_some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
}

/// DESCRIBE on a transactional id (DescribeTransactions, ListTransactions).
pub fn txn_describe(access: &Access<'_>, transactional_id: &str) -> bool {
    access.allows(Op::Describe, Resource::transactional_id(transactional_id))
}

/// Partitions taken out of a request, each with its error code.
pub type RefusedPartitions = Vec<((String, i32), i16)>;

/// AddPartitionsToTxn: v0-3 (a producer) WRITE on the transactional id
/// (else the whole request is refused) and on each topic (refused
/// partitions are taken out, with TOPIC_AUTHORIZATION_FAILED); v4+ (from a
/// broker) CLUSTER_ACTION on the cluster.
pub fn add_partitions_to_txn(
    access: &Access<'_>,
    req: &mut AddPartitionsToTxnRequest,
    version: i16,
) -> Result<RefusedPartitions, i16> {
    if version >= 4 {
        return match access.cluster(Op::ClusterAction) {
            true => Ok(Vec::new()),
            false => Err(code::CLUSTER_AUTHORIZATION_FAILED),
        };
    }
    if let Some(error) = txn_write(access, &req.v3_and_below_transactional_id.0) {
        return Err(error);
    }
    let refused = refuse(&mut req.v3_and_below_topics, |t| {
        access.topic(Op::Write, &t.name.0)
    });
    Ok(refused
        .into_iter()
        .flat_map(|t| {
            t.partitions
                .into_iter()
                .map(move |p| ((t.name.0.to_string(), p), code::TOPIC_AUTHORIZATION_FAILED))
        })
        .collect())
}

/// AddOffsetsToTxn and TxnOffsetCommit: WRITE on the transactional id, READ
/// on the group.
pub fn txn_offsets(access: &Access<'_>, transactional_id: &str, group: &str) -> Option<i16> {
    txn_write(access, transactional_id).or_else(|| group_read(access, group))
}
