//! The group APIs on the wire: turn kafka-protocol requests into coordinator
//! calls and the results into responses, setting only the fields each
//! version has (so encoding never fails) and Kafka's error codes.
//!
//! FindCoordinator 0-4 (groups, and transactional ids through `txn`), JoinGroup 0-9, SyncGroup 0-5, Heartbeat 0-4,
//! LeaveGroup 0-5, DescribeGroups 0-5 (a consumer-protocol group is
//! GROUP_ID_NOT_FOUND there, as Kafka), ListGroups 0-5 (v5: group types), DeleteGroups 0-2,
//! OffsetCommit 2-9, OffsetFetch 1-9, OffsetDelete 0.
//!
//! Must never: hold group policy (the coordinator in `group/` decides; its
//! `CoordinatorError`s become codes through `kafka::errors`). Locks: none.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::errors::{coordinator_error_code, outcome_code};
use super::{code, str_bytes};
use crate::group::records::OffsetValue;
use crate::group::{
    CommitRequest, GroupCoordinator, JoinRequest, PartitionCommit, SyncRequest, TopicOffsets,
};
use crate::txn::TransactionCoordinator;

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// DescribeGroups: authorized operations were not asked for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Who sent a request: the header's client id and the peer's address.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// As Kafka shows it: `/127.0.0.1`.
    pub client_host: String,
}

fn string(s: &StrBytes) -> String {
    s.to_string()
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(string)
}

fn opt_str_bytes(s: Option<String>) -> Option<StrBytes> {
    s.map(str_bytes)
}

pub fn find_coordinator(
    groups: &GroupCoordinator,
    txns: &TransactionCoordinator,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // Where each group's coordinator is: this node, or in a cluster the
    // leader of the group's __consumer_offsets partition.
    let locate = |group: &str| groups.coordinator_of(group);
    let lookup = |key: &StrBytes| -> Coordinator {
        let found = match req.key_type {
            KEY_TYPE_GROUP => locate(key).map_err(|e| coordinator_error_code(&e)),
            KEY_TYPE_TRANSACTION => txns
                .coordinator_of(key)
                .map_err(|e| super::errors::txn_error_code(&e)),
            _ => Err(code::INVALID_REQUEST),
        };
        let error = found.as_ref().err().copied().unwrap_or(code::NONE);
        let mut c = Coordinator::default();
        c.key = key.clone();
        c.error_code = error;
        if let Ok((node, host, port)) = found {
            c.node_id = BrokerId(node);
            c.host = str_bytes(host);
            c.port = port;
        } else {
            c.node_id = BrokerId(-1);
            c.host = StrBytes::default();
            c.port = -1;
            c.error_message = kafka_protocol::ResponseError::try_from_code(error)
                .map(|e| str_bytes(e.to_string()));
        }
        c
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = req.coordinator_keys.iter().map(lookup).collect();
    } else {
        let c = lookup(&req.key);
        resp.error_code = c.error_code;
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
        if version >= 1 {
            resp.error_message = c.error_message;
        }
    }
    resp
}

pub async fn join_group(
    groups: &Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: string(&req.member_id),
        group_instance_id: if version >= 5 {
            opt_string(&req.group_instance_id)
        } else {
            None
        },
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves as one.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: string(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| (string(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4 && req.group_instance_id.is_none(),
    };
    let outcome = groups.join_group(join).await;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = outcome_code(&outcome.error);
    resp.generation_id = outcome.generation_id;
    if version >= 7 {
        resp.protocol_type = opt_str_bytes(outcome.protocol_type);
        resp.protocol_name = opt_str_bytes(outcome.protocol_name);
    } else {
        resp.protocol_name = Some(str_bytes(outcome.protocol_name.unwrap_or_default()));
    }
    resp.leader = str_bytes(outcome.leader_id);
    // Before v9 the leader cannot be told to keep its assignment; it computes
    // one, and the coordinator keeps the stored one in the Stable state.
    resp.skip_assignment = version >= 9 && outcome.skip_assignment;
    resp.member_id = str_bytes(outcome.member_id);
    resp.members = outcome
        .members
        .into_iter()
        .map(|m| {
            let mut r = JoinGroupResponseMember::default();
            r.member_id = str_bytes(m.member_id);
            if version >= 5 {
                r.group_instance_id = opt_str_bytes(m.group_instance_id);
            }
            r.metadata = m.metadata;
            r
        })
        .collect();
    resp
}

pub async fn sync_group(
    groups: &Arc<GroupCoordinator>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: string(&req.member_id),
        group_instance_id: if version >= 3 {
            opt_string(&req.group_instance_id)
        } else {
            None
        },
        protocol_type: if version >= 5 {
            opt_string(&req.protocol_type)
        } else {
            None
        },
        protocol_name: if version >= 5 {
            opt_string(&req.protocol_name)
        } else {
            None
        },
        assignments: req
            .assignments
            .iter()
            .map(|a| (string(&a.member_id), a.assignment.clone()))
            .collect(),
    };
    let outcome = groups.sync_group(sync).await;
    let mut resp = SyncGroupResponse::default();
    resp.error_code = outcome_code(&outcome.error);
    if version >= 5 {
        resp.protocol_type = opt_str_bytes(outcome.protocol_type);
        resp.protocol_name = opt_str_bytes(outcome.protocol_name);
    }
    resp.assignment = outcome.assignment;
    resp
}

pub fn heartbeat(
    groups: &GroupCoordinator,
    req: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let instance = if version >= 3 {
        opt_string(&req.group_instance_id)
    } else {
        None
    };
    let mut resp = HeartbeatResponse::default();
    resp.error_code = outcome_code(&groups.heartbeat(
        &req.group_id,
        &string(&req.member_id),
        instance.as_deref(),
        req.generation_id,
    ));
    resp
}

pub fn leave_group(
    groups: &Arc<GroupCoordinator>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (string(&m.member_id), opt_string(&m.group_instance_id)))
            .collect()
    } else {
        vec![(string(&req.member_id), None)]
    };
    let (error, errors) = groups.leave_group(&req.group_id, &leaving);
    let error = outcome_code(&error);
    let mut resp = LeaveGroupResponse::default();
    if version >= 3 {
        resp.error_code = error;
        resp.members = leaving
            .into_iter()
            .zip(errors)
            .map(|((member_id, instance), error)| {
                let mut m = MemberResponse::default();
                m.member_id = str_bytes(member_id);
                m.group_instance_id = opt_str_bytes(instance);
                m.error_code = outcome_code(&error);
                m
            })
            .collect();
    } else {
        // One member: its error is the response's.
        resp.error_code = if error != code::NONE {
            error
        } else {
            errors.first().map_or(code::NONE, outcome_code)
        };
    }
    resp
}

pub fn describe_groups(
    groups: &GroupCoordinator,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    resp.groups = req
        .groups
        .iter()
        .map(|id| {
            let mut d = DescribedGroup::default();
            d.group_id = id.clone();
            d.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
            match groups.describe_group(id) {
                Err(error) => {
                    d.error_code = coordinator_error_code(&error);
                    d.group_state = StrBytes::from_static_str("");
                }
                // Consumer and share groups are not described by this API.
                Ok(g)
                    if g.group_type == "consumer"
                        || (g.state == "Dead" && groups.is_share_group(&id.0)) =>
                {
                    d.error_code = code::GROUP_ID_NOT_FOUND;
                    if version >= 6 {
                        d.error_message =
                            Some(str_bytes(format!("Group {} is not a classic group.", id.0)));
                    }
                    d.group_state = StrBytes::from_static_str("");
                }
                Ok(g) => {
                    d.group_state = StrBytes::from_static_str(g.state);
                    d.protocol_type = str_bytes(g.protocol_type);
                    d.protocol_data = str_bytes(g.protocol);
                    d.members = g
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = str_bytes(m.member_id);
                            if version >= 4 {
                                dm.group_instance_id = opt_str_bytes(m.group_instance_id);
                            }
                            dm.client_id = str_bytes(m.client_id);
                            dm.client_host = str_bytes(m.client_host);
                            dm.member_metadata = m.metadata;
                            dm.member_assignment = m.assignment;
                            dm
                        })
                        .collect();
                }
            }
            d
        })
        .collect();
    resp
}

pub fn list_groups(
    groups: &GroupCoordinator,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(string).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(string).collect()
    } else {
        Vec::new()
    };
    let mut resp = ListGroupsResponse::default();
    resp.groups = groups
        .list_groups_of_types(&states, &types)
        .into_iter()
        .map(|g| {
            let mut l = ListedGroup::default();
            l.group_id = GroupId(str_bytes(g.group_id));
            l.protocol_type = str_bytes(g.protocol_type);
            if version >= 4 {
                l.group_state = StrBytes::from_static_str(g.state);
            }
            if version >= 5 {
                l.group_type = StrBytes::from_static_str(g.group_type);
            }
            l
        })
        .collect();
    resp
}

pub async fn delete_groups(
    groups: &Arc<GroupCoordinator>,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
    let errors = groups.delete_groups(&ids).await;
    let mut resp = DeleteGroupsResponse::default();
    resp.results = req
        .groups_names
        .into_iter()
        .zip(errors)
        .map(|(group_id, error)| {
            let mut r =
                kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
            r.group_id = group_id;
            r.error_code = outcome_code(&error);
            r
        })
        .collect();
    resp
}

pub async fn offset_commit(
    groups: &Arc<GroupCoordinator>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let partitions: Vec<PartitionCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| PartitionCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: opt_string(&p.committed_metadata),
            })
        })
        .collect();
    let commit = CommitRequest {
        group_id: req.group_id.to_string(),
        member_id: string(&req.member_id),
        group_instance_id: if version >= 7 {
            opt_string(&req.group_instance_id)
        } else {
            None
        },
        generation_id: req.generation_id_or_member_epoch,
        partitions,
    };
    let mut errors = groups.commit_offsets(commit).await.into_iter();
    let mut resp = OffsetCommitResponse::default();
    resp.topics = req
        .topics
        .into_iter()
        .map(|t| {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut rp = OffsetCommitResponsePartition::default();
                    rp.partition_index = p.partition_index;
                    rp.error_code = errors
                        .next()
                        .map_or(code::UNKNOWN_SERVER_ERROR, |e| outcome_code(&e));
                    rp
                })
                .collect();
            rt.name = t.name;
            rt
        })
        .collect();
    resp
}

/// The committed offset, epoch and metadata of a fetched partition (-1s and
/// empty metadata when nothing was committed).
fn committed_fields(v: Option<OffsetValue>, version: i16) -> (i64, i32, StrBytes) {
    match v {
        Some(v) => (
            v.offset,
            if version >= 5 { v.leader_epoch } else { -1 },
            str_bytes(v.metadata),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}

pub fn offset_fetch(
    groups: &GroupCoordinator,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        resp.groups = req
            .groups
            .into_iter()
            .map(|rg| {
                let topics = rg.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect::<Vec<_>>()
                });
                let mut g = OffsetFetchResponseGroup::default();
                let member = rg.member_id.as_ref().map(|m| m.to_string());
                let fetched = if version >= 9 {
                    groups.offset_fetch_gate(&rg.group_id, member.as_deref(), rg.member_epoch)
                } else {
                    Ok(())
                };
                match fetched.and_then(|()| groups.fetch_offsets(&rg.group_id, topics)) {
                    Err(error) => g.error_code = coordinator_error_code(&error),
                    Ok(found) => {
                        g.topics = found
                            .into_iter()
                            .map(|(name, parts)| {
                                let mut t = OffsetFetchResponseTopics::default();
                                t.name = TopicName(str_bytes(name));
                                t.partitions = parts
                                    .into_iter()
                                    .map(|(p, v)| {
                                        let (offset, epoch, metadata) =
                                            committed_fields(v, version);
                                        let mut rp = OffsetFetchResponsePartitions::default();
                                        rp.partition_index = p;
                                        rp.committed_offset = offset;
                                        rp.committed_leader_epoch = epoch;
                                        rp.metadata = Some(metadata);
                                        rp
                                    })
                                    .collect();
                                t
                            })
                            .collect();
                    }
                }
                g.group_id = rg.group_id;
                g
            })
            .collect();
        return resp;
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let to_topics = |found: TopicOffsets, error: i16| -> Vec<OffsetFetchResponseTopic> {
        found
            .into_iter()
            .map(|(name, parts)| {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = TopicName(str_bytes(name));
                t.partitions = parts
                    .into_iter()
                    .map(|(p, v)| {
                        let (offset, epoch, metadata) = committed_fields(v, version);
                        let mut rp = OffsetFetchResponsePartition::default();
                        rp.partition_index = p;
                        rp.committed_offset = offset;
                        rp.committed_leader_epoch = epoch;
                        rp.metadata = Some(metadata);
                        rp.error_code = error;
                        rp
                    })
                    .collect();
                t
            })
            .collect()
    };
    match groups.fetch_offsets(&req.group_id, requested.clone()) {
        Ok(found) => resp.topics = to_topics(found, code::NONE),
        Err(error) => {
            let error = coordinator_error_code(&error);
            if version >= 2 {
                resp.error_code = error;
            } else {
                // v1 has no group-level error: every partition carries it.
                let echo = requested
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                    .collect();
                resp.topics = to_topics(echo, error);
            }
        }
    }
    resp
}

pub fn offset_delete(groups: &GroupCoordinator, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let topics: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let mut resp = OffsetDeleteResponse::default();
    match groups.delete_offsets(&req.group_id, topics) {
        Err(error) => resp.error_code = coordinator_error_code(&error),
        Ok(result) => {
            resp.topics = result
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = OffsetDeleteResponseTopic::default();
                    t.name = TopicName(str_bytes(name));
                    t.partitions = parts
                        .into_iter()
                        .map(|(p, error)| {
                            let mut rp = OffsetDeleteResponsePartition::default();
                            rp.partition_index = p;
                            rp.error_code = outcome_code(&error);
                            rp
                        })
                        .collect();
                    t
                })
                .collect();
        }
    }
    resp
}
