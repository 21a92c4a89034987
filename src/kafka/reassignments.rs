//! AlterPartitionReassignments (45), ListPartitionReassignments (46) and
//! UnregisterBroker (64): each maps the request to calls of the partition
//! layer (`partition::reassign`) and the results back. A reassignment runs
//! in the background once accepted (the new replicas catch up, then the
//! target becomes the replica set); UnregisterBroker starts a broker's
//! removal the same way (its replicas move first, then it leaves the Raft
//! voters and the metadata).
//!
//! Must never: decide anything about replicas (the controller does).
//! Locks: none.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};

use super::errors::reassign_error;
use super::str_bytes;
use crate::partition::Partitions;

/// Answer an AlterPartitionReassignments, one result per partition asked.
pub async fn alter(
    partitions: &Partitions,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let keep_replication_factor = version >= 1 && !req.allow_replication_factor_change;
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.allow_replication_factor_change = !keep_replication_factor;
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut t = ReassignableTopicResponse::default();
        t.name = topic.name;
        for p in topic.partitions {
            let target = p
                .replicas
                .map(|replicas| replicas.into_iter().map(|b| b.0).collect());
            let mut r = ReassignablePartitionResponse::default();
            r.partition_index = p.partition_index;
            let result = partitions
                .reassign_partition(&name, p.partition_index, target, keep_replication_factor)
                .await;
            if let Err(e) = result {
                let (error, message) = reassign_error(&e);
                r.error_code = error;
                r.error_message = Some(str_bytes(message));
            }
            t.partitions.push(r);
        }
        resp.responses.push(t);
    }
    resp
}

/// An AlterPartitionReassignments refused as a whole with `error`.
pub fn alter_refused(error: i16) -> AlterPartitionReassignmentsResponse {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.error_code = error;
    resp
}

/// Answer a ListPartitionReassignments: the ongoing reassignments of every
/// partition, or of the partitions named.
pub fn list(
    partitions: &Partitions,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let only: Option<Vec<(String, i32)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes
                    .into_iter()
                    .map(move |i| (name.clone(), i))
            })
            .collect()
    });
    let mut resp = ListPartitionReassignmentsResponse::default();
    for r in partitions.partition_reassignments(only.as_deref()) {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        let mut p = OngoingPartitionReassignment::default();
        p.partition_index = r.partition;
        p.replicas = ids(&r.replicas);
        p.adding_replicas = ids(&r.adding_replicas);
        p.removing_replicas = ids(&r.removing_replicas);
        match resp.topics.last_mut() {
            Some(t) if *t.name.0 == *r.topic => t.partitions.push(p),
            _ => {
                let mut t = OngoingTopicReassignment::default();
                t.name = TopicName(str_bytes(r.topic));
                t.partitions.push(p);
                resp.topics.push(t);
            }
        }
    }
    resp
}

/// A ListPartitionReassignments refused with `error`.
pub fn list_refused(error: i16) -> ListPartitionReassignmentsResponse {
    let mut resp = ListPartitionReassignmentsResponse::default();
    resp.error_code = error;
    resp
}

/// Answer an UnregisterBroker: the broker's removal has begun (its replicas
/// move, then it leaves the cluster), or why not.
pub async fn unregister(
    partitions: &Partitions,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let mut resp = UnregisterBrokerResponse::default();
    if let Err(e) = partitions.remove_broker(req.broker_id.0).await {
        let (error, message) = reassign_error(&e);
        resp.error_code = error;
        resp.error_message = Some(str_bytes(message));
    }
    resp
}

/// An UnregisterBroker refused with `error`.
pub fn unregister_refused(error: i16) -> UnregisterBrokerResponse {
    let mut resp = UnregisterBrokerResponse::default();
    resp.error_code = error;
    resp
}

#[cfg(test)]
mod tests {
    use super::super::code;
    use super::*;

    #[test]
    fn refusals_carry_the_code() {
        assert_eq!(
            alter_refused(code::CLUSTER_AUTHORIZATION_FAILED).error_code,
            code::CLUSTER_AUTHORIZATION_FAILED
        );
        assert_eq!(list_refused(code::NONE).error_code, code::NONE);
        assert_eq!(
            unregister_refused(code::CLUSTER_AUTHORIZATION_FAILED).error_code,
            code::CLUSTER_AUTHORIZATION_FAILED
        );
    }
}
