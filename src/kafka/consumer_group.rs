//! The consumer group protocol (KIP-848) on the wire: ConsumerGroupHeartbeat
//! 0-1 and ConsumerGroupDescribe 0-1. Topic partitions travel by topic id.
//!
//! Must never: hold group policy (the coordinator's `group::consumer`
//! decides; its errors become codes through `kafka::errors`). Locks: none.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authz::Access;
use super::errors::coordinator_error_code;
use super::group::ClientInfo;
use super::{code, str_bytes};
use crate::group::consumer::assignor::Assignment as Partitions;
use crate::group::consumer::HeartbeatRequest;
use crate::group::GroupCoordinator;
use crate::security::acls::AclOperation;
use crate::security::authorizer::Resource;

/// Authorized operations were not asked for.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// ConsumerGroupHeartbeat (READ on the group, as JoinGroup).
pub fn heartbeat(
    groups: &std::sync::Arc<GroupCoordinator>,
    access: &Access<'_>,
    req: ConsumerGroupHeartbeatRequest,
    client: &ClientInfo,
) -> ConsumerGroupHeartbeatResponse {
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    resp.heartbeat_interval_ms = groups.consumer_heartbeat_interval_ms(&req.group_id);
    if !access.group(AclOperation::Read, &req.group_id.0) {
        resp.error_code = code::GROUP_AUTHORIZATION_FAILED;
        return resp;
    }
    let refused_topic = req
        .subscribed_topic_names
        .iter()
        .flatten()
        .any(|t| !access.topic(AclOperation::Describe, &t.0));
    if refused_topic {
        resp.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        return resp;
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = Partitions::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a.retain(|_, ps| !ps.is_empty());
        a
    });
    let request = HeartbeatRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: opt_string(&req.instance_id),
        rack_id: opt_string(&req.rack_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: opt_string(&req.subscribed_topic_regex),
        server_assignor: opt_string(&req.server_assignor),
        owned,
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        classic: None,
    };
    match groups.consumer_group_heartbeat(request) {
        Err(e) => {
            resp.error_code = coordinator_error_code(&e);
            resp.error_message = Some(str_bytes(e.to_string()));
        }
        Ok(answer) => {
            resp.member_id = Some(str_bytes(answer.member_id));
            resp.member_epoch = answer.member_epoch;
            resp.assignment = answer.assignment.map(|a| {
                let mut out = Assignment::default();
                out.topic_partitions = a
                    .into_iter()
                    .map(|(id, ps)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = ps.into_iter().collect();
                        tp
                    })
                    .collect();
                out
            });
        }
    }
    resp
}

fn described(a: Vec<(uuid::Uuid, String, Vec<i32>)>) -> DescribedAssignment {
    let mut out = DescribedAssignment::default();
    out.topic_partitions = a
        .into_iter()
        .map(|(id, name, partitions)| {
            let mut tp = DescribedPartitions::default();
            tp.topic_id = id;
            tp.topic_name = TopicName(str_bytes(name));
            tp.partitions = partitions;
            tp
        })
        .collect();
    out
}

/// The groups of a describe request (ConsumerGroupDescribe,
/// ShareGroupDescribe), one `$Group` each: refused without DESCRIBE on the
/// group, the coordinator's error, or filled in by `$fill` with the
/// coordinator's description `$g`.
macro_rules! describe_each {
    ($req:expr, $access:expr, $Group:ty, |$id:ident| $describe:expr, |$d:ident, $g:ident| $fill:block) => {
        $req.group_ids
            .iter()
            .map(|$id| {
                let mut $d = <$Group>::default();
                $d.group_id = $id.clone();
                $d.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
                if !$access.group(AclOperation::Describe, &$id.0) {
                    $d.error_code = code::GROUP_AUTHORIZATION_FAILED;
                    return $d;
                }
                match $describe {
                    Err(e) => {
                        $d.error_code = coordinator_error_code(&e);
                        $d.error_message = Some(str_bytes(format!("Group {} {e}", $id.0)));
                    }
                    Ok($g) => $fill,
                }
                $d
            })
            .collect()
    };
}
pub(crate) use describe_each;

/// ConsumerGroupDescribe (DESCRIBE on each group).
pub fn describe(
    groups: &GroupCoordinator,
    access: &Access<'_>,
    req: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut resp = ConsumerGroupDescribeResponse::default();
    resp.groups = describe_each!(
        req,
        access,
        DescribedGroup,
        |id| groups.consumer_group_describe(&id.0),
        |d, g| {
            d.group_state = StrBytes::from_static_str(g.state);
            d.group_epoch = g.group_epoch;
            d.assignment_epoch = g.assignment_epoch;
            d.assignor_name = str_bytes(g.assignor);
            if req.include_authorized_operations {
                d.authorized_operations = access.operations(Resource::group(&id.0));
            }
            d.members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut out = Member::default();
                    out.member_id = str_bytes(m.member_id);
                    out.instance_id = m.metadata.instance_id.map(str_bytes);
                    out.rack_id = m.metadata.rack_id.map(str_bytes);
                    out.member_epoch = m.member_epoch;
                    out.client_id = str_bytes(m.metadata.client_id);
                    out.client_host = str_bytes(m.metadata.client_host);
                    out.subscribed_topic_names = m
                        .metadata
                        .subscribed_topic_names
                        .into_iter()
                        .map(|t| TopicName(str_bytes(t)))
                        .collect();
                    out.subscribed_topic_regex = m.metadata.subscribed_topic_regex.map(str_bytes);
                    out.assignment = described(m.assignment);
                    out.target_assignment = described(m.target_assignment);
                    if version >= 1 {
                        // 0: classic protocol, 1: consumer protocol.
                        out.member_type = if m.classic { 0 } else { 1 };
                    }
                    out
                })
                .collect();
        }
    );
    resp
}

/// Metadata v10+ may name a topic by its id only: consumers of the new
/// protocol resolve the topic ids of their assignment that way. Give such
/// entries their names before the request is authorized and answered (an
/// unknown id stays unnamed and is left out of the answer).
pub fn name_topics_by_id(groups: &GroupCoordinator, req: &mut MetadataRequest) {
    let Some(topics) = req.topics.as_mut() else {
        return;
    };
    if topics
        .iter()
        .all(|t| t.name.is_some() || t.topic_id.is_nil())
    {
        return;
    }
    let names: std::collections::HashMap<uuid::Uuid, String> = groups
        .topic_catalog()
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    for t in topics.iter_mut().filter(|t| t.name.is_none()) {
        if let Some(name) = names.get(&t.topic_id) {
            t.name = Some(TopicName(str_bytes(name.clone())));
        }
    }
}
