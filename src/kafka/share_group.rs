//! Share groups (KIP-932) on the wire: ShareGroupHeartbeat,
//! ShareGroupDescribe, ShareFetch and ShareAcknowledge, version 1 each.
//! Topic partitions travel by topic id.
//!
//! Must never: hold share group policy (`group::share` decides; its errors
//! become codes through `kafka::errors`). Locks: none.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::share_acknowledge_response::{
    PartitionData as AckPartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authz::Access;
use super::consumer_group::{describe_each, AUTHORIZED_OPERATIONS_OMITTED};
use super::errors::{coordinator_error_code, partition_error};
use super::group::ClientInfo;
use super::{code, str_bytes};
use crate::group::share::fetch::{
    AckBatch, PartitionAnswer, RequestPartition, ShareFetchRequest as ShareRead, ShareReadError,
};
use crate::group::share::{ShareHeartbeat, SHARE_ASSIGNOR};
use crate::group::GroupCoordinator;
use crate::security::acls::AclOperation;
use crate::security::authorizer::Resource;

/// The most a ShareFetch waits, whatever it asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// ShareGroupHeartbeat (READ on the group, DESCRIBE on the topics).
pub fn heartbeat(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: ShareGroupHeartbeatRequest,
    client: &ClientInfo,
) -> ShareGroupHeartbeatResponse {
    let mut resp = ShareGroupHeartbeatResponse::default();
    if !access.group(AclOperation::Read, &req.group_id.0) {
        resp.error_code = code::GROUP_AUTHORIZATION_FAILED;
        return resp;
    }
    if req
        .subscribed_topic_names
        .iter()
        .flatten()
        .any(|t| !access.topic(AclOperation::Describe, &t.0))
    {
        resp.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        return resp;
    }
    let request = ShareHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.as_ref().map(|r| r.to_string()),
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
    };
    match groups.share_group_heartbeat(request) {
        Err(e) => {
            resp.error_code = coordinator_error_code(&e);
            resp.error_message = Some(str_bytes(e.to_string()));
        }
        Ok(answer) => {
            resp.member_id = Some(str_bytes(answer.member_id));
            resp.member_epoch = answer.member_epoch;
            resp.heartbeat_interval_ms = answer.heartbeat_interval_ms;
            resp.assignment = answer.assignment.map(|a| {
                let mut out = Assignment::default();
                out.topic_partitions = a
                    .into_iter()
                    .map(|(id, partitions)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = partitions;
                        tp
                    })
                    .collect();
                out
            });
        }
    }
    resp
}

/// ShareGroupDescribe (DESCRIBE on each group).
pub fn describe(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: ShareGroupDescribeRequest,
) -> ShareGroupDescribeResponse {
    let mut resp = ShareGroupDescribeResponse::default();
    resp.groups = describe_each!(
        req,
        access,
        DescribedGroup,
        |id| groups.share_group_describe(&id.0),
        |d, g| {
            d.group_state = StrBytes::from_static_str(g.state);
            d.group_epoch = g.group_epoch;
            d.assignment_epoch = g.group_epoch;
            d.assignor_name = StrBytes::from_static_str(SHARE_ASSIGNOR);
            if req.include_authorized_operations {
                d.authorized_operations = access.operations(Resource::group(&id.0));
            }
            d.members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut out = Member::default();
                    out.member_id = str_bytes(m.member_id);
                    out.rack_id = m.rack_id.map(str_bytes);
                    out.member_epoch = m.member_epoch;
                    out.client_id = str_bytes(m.client_id);
                    out.client_host = str_bytes(m.client_host);
                    out.subscribed_topic_names = m
                        .subscribed_topic_names
                        .into_iter()
                        .map(|t| TopicName(str_bytes(t)))
                        .collect();
                    let mut a = DescribedAssignment::default();
                    a.topic_partitions = m
                        .assignment
                        .into_iter()
                        .map(|(id, name, partitions)| {
                            let mut tp = DescribedPartitions::default();
                            tp.topic_id = id;
                            tp.topic_name = TopicName(str_bytes(name));
                            tp.partitions = partitions;
                            tp
                        })
                        .collect();
                    out.assignment = a;
                    out
                })
                .collect();
        }
    );
    resp
}

/// The error code that refuses a ShareFetch or ShareAcknowledge: READ on
/// the group, and on every topic it names by id.
fn refusal(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    group_id: &str,
    mut topic_ids: impl Iterator<Item = Uuid>,
) -> Option<i16> {
    if !access.group(AclOperation::Read, group_id) {
        return Some(code::GROUP_AUTHORIZATION_FAILED);
    }
    let names: BTreeMap<Uuid, String> = groups
        .topic_catalog()
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    topic_ids
        .any(|id| {
            names
                .get(&id)
                .is_some_and(|name| !access.topic(AclOperation::Read, name))
        })
        .then_some(code::TOPIC_AUTHORIZATION_FAILED)
}

/// The coordinator's request from the fields ShareFetch and
/// ShareAcknowledge share (a fetch then sets its limits).
fn share_read(
    group_id: String,
    member_id: &Option<StrBytes>,
    session_epoch: i32,
    partitions: Vec<RequestPartition>,
    connection: u64,
) -> ShareRead {
    ShareRead {
        connection,
        group_id,
        member_id: member_id
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        session_epoch,
        fetch: false,
        max_wait: Duration::ZERO,
        max_bytes: 0,
        max_records: 0,
        partitions,
        forgotten: Vec::new(),
    }
}

fn ack_batches<'a>(batches: impl Iterator<Item = (i64, i64, &'a Vec<i8>)>) -> Vec<AckBatch> {
    batches
        .map(|(first_offset, last_offset, types)| AckBatch {
            first_offset,
            last_offset,
            types: types.clone(),
        })
        .collect()
}

fn read_error_code(e: &ShareReadError) -> i16 {
    match e {
        ShareReadError::Coordinator(c) => coordinator_error_code(c),
        ShareReadError::Partition(p) => partition_error(p).0,
    }
}

/// The group id, the refusal check and the partitions with their
/// acknowledgements of a ShareFetch or ShareAcknowledge (their fields have
/// the same names in both): returns the response with the refusal's code
/// from the handler, or binds `$group_id` and `$partitions`.
macro_rules! share_request_parts {
    ($groups:expr, $access:expr, $req:expr, $resp:ident, $group_id:ident, $partitions:ident) => {
        let $group_id = $req
            .group_id
            .as_ref()
            .map(|g| g.0.to_string())
            .unwrap_or_default();
        if let Some(error) = refusal(
            $groups,
            $access,
            &$group_id,
            $req.topics.iter().map(|t| t.topic_id),
        ) {
            $resp.error_code = error;
            return $resp;
        }
        let $partitions: Vec<RequestPartition> = $req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| RequestPartition {
                    topic_id: t.topic_id,
                    partition: p.partition_index,
                    acks: ack_batches(
                        p.acknowledgement_batches
                            .iter()
                            .map(|b| (b.first_offset, b.last_offset, &b.acknowledge_types)),
                    ),
                })
            })
            .collect();
    };
}

/// ShareFetch (READ on the group and on each topic).
pub async fn fetch(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: ShareFetchRequest,
    connection: u64,
) -> ShareFetchResponse {
    let mut resp = ShareFetchResponse::default();
    share_request_parts!(groups, access, req, resp, group_id, partitions);
    let mut request = share_read(
        group_id,
        &req.member_id,
        req.share_session_epoch,
        partitions,
        connection,
    );
    request.fetch = true;
    request.max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    request.max_bytes = req.max_bytes.max(0) as usize;
    request.max_records = req.max_records.max(0) as usize;
    request.forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    match groups.share_fetch(request).await {
        Err(e) => {
            resp.error_code = coordinator_error_code(&e);
            resp.error_message = Some(str_bytes(e.to_string()));
        }
        Ok(answer) => {
            resp.acquisition_lock_timeout_ms = answer.acquisition_lock_timeout_ms;
            let mut topics: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
            for a in answer.partitions {
                topics
                    .entry(a.topic_id)
                    .or_default()
                    .push(fetch_partition(a));
            }
            resp.responses = topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    let mut t = ShareFetchableTopicResponse::default();
                    t.topic_id = topic_id;
                    t.partitions = partitions;
                    t
                })
                .collect();
        }
    }
    resp
}

fn fetch_partition(a: PartitionAnswer) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = a.partition;
    p.error_code = a.error.as_ref().map_or(code::NONE, read_error_code);
    p.acknowledge_error_code = a
        .ack_error
        .as_ref()
        .map_or(code::NONE, coordinator_error_code);
    p.current_leader.leader_id = -1;
    p.current_leader.leader_epoch = -1;
    // Empty, never null: librdkafka stops reading a response at a partition
    // with null records (an acknowledgement-only one), losing the records of
    // the partitions after it.
    p.records = Some(a.records.unwrap_or_default());
    p.acquired_records = a
        .acquired
        .into_iter()
        .map(|r| {
            let mut out = AcquiredRecords::default();
            out.first_offset = r.first_offset;
            out.last_offset = r.last_offset;
            out.delivery_count = r.delivery_count;
            out
        })
        .collect();
    p
}

/// ShareAcknowledge (READ on the group and on each topic).
pub async fn acknowledge(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: ShareAcknowledgeRequest,
    connection: u64,
) -> ShareAcknowledgeResponse {
    let mut resp = ShareAcknowledgeResponse::default();
    share_request_parts!(groups, access, req, resp, group_id, partitions);
    let request = share_read(
        group_id,
        &req.member_id,
        req.share_session_epoch,
        partitions,
        connection,
    );
    match groups.share_fetch(request).await {
        Err(e) => {
            resp.error_code = coordinator_error_code(&e);
            resp.error_message = Some(str_bytes(e.to_string()));
        }
        Ok(answer) => {
            let mut topics: BTreeMap<Uuid, Vec<AckPartitionData>> = BTreeMap::new();
            for a in answer.partitions {
                let mut p = AckPartitionData::default();
                p.partition_index = a.partition;
                p.error_code = a
                    .ack_error
                    .as_ref()
                    .map_or(code::NONE, coordinator_error_code);
                p.current_leader.leader_id = -1;
                p.current_leader.leader_epoch = -1;
                topics.entry(a.topic_id).or_default().push(p);
            }
            resp.responses = topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    let mut t = ShareAcknowledgeTopicResponse::default();
                    t.topic_id = topic_id;
                    t.partitions = partitions;
                    t
                })
                .collect();
        }
    }
    resp
}

/// The topics the principal may READ, and the others.
fn readable<T>(access: &Access<'_>, topics: Vec<T>, name: impl Fn(&T) -> &str) -> (Vec<T>, Vec<T>) {
    topics
        .into_iter()
        .partition(|t| access.topic(AclOperation::Read, name(t)))
}

/// An error's code and, for a top-level refusal, its message.
fn group_refusal(e: &crate::group::CoordinatorError) -> (i16, Option<StrBytes>) {
    (coordinator_error_code(e), Some(str_bytes(e.to_string())))
}

/// DescribeShareGroupOffsets (DESCRIBE on each group; a topic without
/// DESCRIBE is answered TOPIC_AUTHORIZATION_FAILED on its partitions).
pub fn describe_offsets(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group,
        DescribeShareGroupOffsetsResponsePartition as Partition,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    let mut resp = DescribeShareGroupOffsetsResponse::default();
    for g in req.groups {
        let mut out = Group::default();
        out.group_id = g.group_id.clone();
        if !access.group(AclOperation::Describe, &g.group_id.0) {
            out.error_code = code::GROUP_AUTHORIZATION_FAILED;
            resp.groups.push(out);
            continue;
        }
        let asked = g.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions))
                .collect()
        });
        match groups.describe_share_group_offsets(&g.group_id.0, asked) {
            Err(e) => (out.error_code, out.error_message) = group_refusal(&e),
            Ok(topics) => {
                out.topics = topics
                    .into_iter()
                    .map(|t| {
                        let allowed = access.topic(AclOperation::Describe, &t.name);
                        let mut topic = Topic::default();
                        topic.topic_name = TopicName(str_bytes(t.name));
                        topic.topic_id = t.topic_id;
                        topic.partitions = t
                            .partitions
                            .into_iter()
                            .map(|p| {
                                let mut part = Partition::default();
                                part.partition_index = p.partition;
                                part.leader_epoch = -1;
                                if !allowed {
                                    part.start_offset = -1;
                                    part.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                                } else {
                                    part.start_offset = p.start_offset;
                                    part.leader_epoch = p.leader_epoch;
                                    part.error_code =
                                        p.error.as_ref().map_or(code::NONE, coordinator_error_code);
                                }
                                part
                            })
                            .collect();
                        topic
                    })
                    .collect();
            }
        }
        resp.groups.push(out);
    }
    resp
}

/// AlterShareGroupOffsets (READ on the group and on each topic).
pub async fn alter_offsets(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    use kafka_protocol::messages::alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as Partition,
        AlterShareGroupOffsetsResponseTopic as Topic,
    };
    let mut resp = AlterShareGroupOffsetsResponse::default();
    if !access.group(AclOperation::Read, &req.group_id.0) {
        resp.error_code = code::GROUP_AUTHORIZATION_FAILED;
        return resp;
    }
    let (allowed, refused) = readable(access, req.topics, |t| &t.topic_name.0);
    let asked = allowed
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.start_offset))
                .collect();
            (t.topic_name.0.to_string(), partitions)
        })
        .collect();
    match groups
        .alter_share_group_offsets(&req.group_id.0, asked)
        .await
    {
        Err(e) => (resp.error_code, resp.error_message) = group_refusal(&e),
        Ok(topics) => {
            resp.responses = topics
                .into_iter()
                .map(|t| {
                    let mut topic = Topic::default();
                    topic.topic_name = TopicName(str_bytes(t.name));
                    topic.topic_id = t.topic_id;
                    topic.partitions = t
                        .partitions
                        .into_iter()
                        .map(|(partition, error)| {
                            let mut part = Partition::default();
                            part.partition_index = partition;
                            part.error_code =
                                error.as_ref().map_or(code::NONE, coordinator_error_code);
                            part
                        })
                        .collect();
                    topic
                })
                .collect();
        }
    }
    resp.responses.extend(refused.into_iter().map(|t| {
        let mut topic = Topic::default();
        topic.topic_name = t.topic_name;
        topic.partitions = t
            .partitions
            .iter()
            .map(|p| {
                let mut part = Partition::default();
                part.partition_index = p.partition_index;
                part.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                part
            })
            .collect();
        topic
    }));
    resp
}

/// DeleteShareGroupOffsets (DELETE on the group, READ on each topic).
pub async fn delete_offsets(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as Topic;
    let mut resp = DeleteShareGroupOffsetsResponse::default();
    if !access.group(AclOperation::Delete, &req.group_id.0) {
        resp.error_code = code::GROUP_AUTHORIZATION_FAILED;
        return resp;
    }
    let (allowed, refused) = readable(access, req.topics, |t| &t.topic_name.0);
    let asked = allowed
        .into_iter()
        .map(|t| t.topic_name.0.to_string())
        .collect();
    match groups
        .delete_share_group_offsets(&req.group_id.0, asked)
        .await
    {
        Err(e) => (resp.error_code, resp.error_message) = group_refusal(&e),
        Ok(topics) => {
            resp.responses = topics
                .into_iter()
                .map(|t| {
                    let mut topic = Topic::default();
                    topic.topic_name = TopicName(str_bytes(t.name));
                    topic.topic_id = t.topic_id;
                    topic.error_code = t.error.as_ref().map_or(code::NONE, coordinator_error_code);
                    topic
                })
                .collect();
        }
    }
    resp.responses.extend(refused.into_iter().map(|t| {
        let mut topic = Topic::default();
        topic.topic_name = t.topic_name;
        topic.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        topic
    }));
    resp
}
