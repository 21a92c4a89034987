//! ElectLeaders (43): preferred (type 0) or unclean (type 1) leader
//! elections on request, one call per partition into the partition layer
//! (`Partitions::elect_leader`: the controller's election in a cluster; a
//! single node's only replica leads already). With no partitions named,
//! every partition is elected and only those whose leader changed or that
//! failed are reported (Kafka leaves out ELECTION_NOT_NEEDED then).
//!
//! Must never: choose a leader (the controller does). Locks: none.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::errors::election_error_code;
use super::{code, str_bytes};
use crate::partition::Partitions;
use crate::replication::{ElectionError, ElectionType};

/// Kafka's election type numbers.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// The partitions a request names, by topic (all when it names none).
fn targets(partitions: &Partitions, req: &ElectLeadersRequest) -> (Vec<(String, i32)>, bool) {
    match &req.topic_partitions {
        Some(topics) => (
            topics
                .iter()
                .flat_map(|t| {
                    let name = t.topic.0.to_string();
                    t.partitions.iter().map(move |p| (name.clone(), *p))
                })
                .collect(),
            false,
        ),
        None => (partitions.all_partitions(), true),
    }
}

/// Answer an ElectLeaders.
pub async fn elect(
    partitions: &Partitions,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let kind = match req.election_type {
        PREFERRED => ElectionType::Preferred,
        UNCLEAN => ElectionType::Unclean,
        _ => return refused(partitions, &req, code::INVALID_REQUEST, version),
    };
    let (targets, every) = targets(partitions, &req);
    let mut outcomes = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        let outcome = partitions.elect_leader(&topic, partition, kind).await;
        if every && outcome == Err(ElectionError::NotNeeded) {
            continue;
        }
        let (error, message) = match &outcome {
            Ok(()) => (code::NONE, None),
            Err(e) => (election_error_code(e), Some(e.to_string())),
        };
        outcomes.push((topic, partition, error, message));
    }
    respond(outcomes)
}

/// An ElectLeaders refused with `error` (the top-level code of v1+, and
/// every partition's).
pub fn refused(
    partitions: &Partitions,
    req: &ElectLeadersRequest,
    error: i16,
    version: i16,
) -> ElectLeadersResponse {
    let (targets, _) = targets(partitions, req);
    let mut resp = respond(
        targets
            .into_iter()
            .map(|(t, p)| (t, p, error, None))
            .collect(),
    );
    if version >= 1 {
        resp.error_code = error;
    }
    resp
}

/// Results grouped by topic, in the order given.
fn respond(outcomes: Vec<(String, i32, i16, Option<String>)>) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    for (topic, partition, error, message) in outcomes {
        let mut p = PartitionResult::default();
        p.partition_id = partition;
        p.error_code = error;
        p.error_message = message.map(str_bytes);
        match resp
            .replica_election_results
            .iter_mut()
            .find(|r| *r.topic.0 == *topic)
        {
            Some(r) => r.partition_result.push(p),
            None => {
                let mut r = ReplicaElectionResult::default();
                r.topic = TopicName(str_bytes(topic));
                r.partition_result.push(p);
                resp.replica_election_results.push(r);
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_grouped_by_topic() {
        let resp = respond(vec![
            ("a".into(), 0, code::NONE, None),
            ("b".into(), 0, code::ELECTION_NOT_NEEDED, Some("led".into())),
            ("a".into(), 1, code::PREFERRED_LEADER_NOT_AVAILABLE, None),
        ]);
        let shape: Vec<(String, Vec<(i32, i16)>)> = resp
            .replica_election_results
            .iter()
            .map(|r| {
                (
                    r.topic.0.to_string(),
                    r.partition_result
                        .iter()
                        .map(|p| (p.partition_id, p.error_code))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    "a".into(),
                    vec![(0, code::NONE), (1, code::PREFERRED_LEADER_NOT_AVAILABLE)]
                ),
                ("b".into(), vec![(0, code::ELECTION_NOT_NEEDED)]),
            ]
        );
    }
}
