//! DescribeQuorum (55): the metadata quorum as KRaft reports it, for the
//! one partition of `__cluster_metadata`, from any node
//! (`Partitions::quorum`: the Raft leader's view, asked of it over the
//! cluster listener by the other nodes). Leader epoch is the Raft term, the
//! high watermark the committed index, and each replica's log end offset
//! the index of the last entry the leader knows it holds. The quorum's
//! `nodes` (KIP-853's controller endpoints) stay empty: the quorum speaks
//! over the cluster listener, not a Kafka listener.
//!
//! Must never: read Raft state itself. Locks: none.

use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{code, str_bytes};
use crate::partition::Partitions;
use crate::replication::{QuorumReplica, QuorumState};

/// KRaft's metadata topic and its one partition.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
const METADATA_PARTITION: i32 = 0;

/// Answer a DescribeQuorum.
pub async fn describe(
    partitions: &Partitions,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let asks_for_quorum = req.topics.iter().any(|t| {
        *t.topic_name.0 == *METADATA_TOPIC
            && t.partitions
                .iter()
                .any(|p| p.partition_index == METADATA_PARTITION)
    });
    let quorum = if asks_for_quorum {
        Some(partitions.quorum().await)
    } else {
        None
    };
    let mut resp = DescribeQuorumResponse::default();
    for topic in req.topics {
        let metadata_topic = *topic.topic_name.0 == *METADATA_TOPIC;
        let mut t = TopicData::default();
        t.topic_name = topic.topic_name;
        for p in topic.partitions {
            let mut out = PartitionData::default();
            out.partition_index = p.partition_index;
            match (
                &quorum,
                metadata_topic && p.partition_index == METADATA_PARTITION,
            ) {
                (Some(Ok(state)), true) => fill(&mut out, state),
                (Some(Err(e)), true) => {
                    out.error_code = code::NOT_LEADER_OR_FOLLOWER;
                    out.error_message = Some(str_bytes(e.to_string()));
                }
                _ => out.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            t.partitions.push(out);
        }
        resp.topics.push(t);
    }
    resp
}

/// The partition's answer from the quorum's state.
fn fill(out: &mut PartitionData, state: &QuorumState) {
    let replica = |r: &QuorumReplica| {
        let mut s = ReplicaState::default();
        s.replica_id = BrokerId(i32::try_from(r.node_id).unwrap_or(-1));
        s.log_end_offset = r.log_end_offset;
        s
    };
    out.leader_id = BrokerId(i32::try_from(state.leader_id).unwrap_or(-1));
    out.leader_epoch = i32::try_from(state.leader_epoch).unwrap_or(i32::MAX);
    out.high_watermark = state.high_watermark;
    out.current_voters = state.voters.iter().map(replica).collect();
    out.observers = state.observers.iter().map(replica).collect();
}

/// A DescribeQuorum refused with `error`.
pub fn refused(error: i16) -> DescribeQuorumResponse {
    let mut resp = DescribeQuorumResponse::default();
    resp.error_code = error;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quorum_fills_leader_epoch_watermark_and_members() {
        let state = QuorumState {
            leader_id: 2,
            leader_epoch: 7,
            high_watermark: 41,
            voters: vec![
                QuorumReplica {
                    node_id: 1,
                    log_end_offset: 40,
                },
                QuorumReplica {
                    node_id: 2,
                    log_end_offset: 41,
                },
            ],
            observers: vec![QuorumReplica {
                node_id: 4,
                log_end_offset: -1,
            }],
        };
        let mut out = PartitionData::default();
        fill(&mut out, &state);
        assert_eq!(
            (out.leader_id.0, out.leader_epoch, out.high_watermark),
            (2, 7, 41)
        );
        let voters: Vec<(i32, i64)> = out
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect();
        assert_eq!(voters, vec![(1, 40), (2, 41)]);
        assert_eq!(out.observers[0].replica_id.0, 4);
        assert_eq!(
            refused(code::CLUSTER_AUTHORIZATION_FAILED).error_code,
            code::CLUSTER_AUTHORIZATION_FAILED
        );
    }
}
