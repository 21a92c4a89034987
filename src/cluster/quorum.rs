//! The metadata quorum as Kafka's DescribeQuorum reports it: the leader, its
//! term (Kafka's leader epoch), the committed index (the high watermark) and
//! every voter's and observer's replicated log position, as the leader's
//! openraft metrics have them. Only the leader knows the others' positions,
//! so any other node asks it over the cluster listener (`QUORUM_PATH`).
//!
//! Must never: change the quorum. Locks: none (reads the metrics' watch).

use serde::{Deserialize, Serialize};

use super::{ClusterHandle, ProposeError, PROPOSE_TIMEOUT};

/// Path where the leader answers with its `QuorumState`.
pub const QUORUM_PATH: &str = "/cluster/quorum";

/// One member of the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumReplica {
    pub node_id: u64,
    /// Index of the last Raft log entry the leader knows this node holds
    /// (its own last entry for the leader); -1 before it has replicated any.
    pub log_end_offset: i64,
}

/// The quorum as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub leader_id: u64,
    /// The leader's Raft term.
    pub leader_epoch: u64,
    /// Index of the last entry a majority of voters holds; -1 when none.
    pub high_watermark: i64,
    /// The voters of the current membership, by id.
    pub voters: Vec<QuorumReplica>,
    /// Nodes that replicate the log without voting (learners), by id.
    pub observers: Vec<QuorumReplica>,
}

impl ClusterHandle {
    /// The quorum as its leader reports it, from any node.
    pub async fn quorum(&self) -> Result<QuorumState, ProposeError> {
        match self.controller() {
            Some(leader) if leader == self.node_id() => self.local_quorum(),
            Some(leader) => {
                let answer: Result<QuorumState, ProposeError> =
                    self.call(leader, QUORUM_PATH, &(), PROPOSE_TIMEOUT).await?;
                answer
            }
            None => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    /// The quorum from this node's metrics, if it is the leader.
    pub(super) fn local_quorum(&self) -> Result<QuorumState, ProposeError> {
        let metrics = self.raft().metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) {
            return Err(ProposeError::NotLeader {
                leader: metrics.current_leader,
            });
        }
        let Some(replication) = metrics.replication.as_ref() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let position = |id: u64| QuorumReplica {
            node_id: id,
            log_end_offset: if id == metrics.id {
                metrics.last_log_index.map_or(-1, |i| i as i64)
            } else {
                replication
                    .get(&id)
                    .and_then(|l| l.as_ref())
                    .map_or(-1, |l| l.index as i64)
            },
        };
        let membership = metrics.membership_config.membership();
        Ok(QuorumState {
            leader_id: metrics.id,
            leader_epoch: metrics.current_term,
            high_watermark: super::committed_index(&metrics).map_or(-1, |i| i as i64),
            voters: membership.voter_ids().map(position).collect(),
            observers: membership.learner_ids().map(position).collect(),
        })
    }
}
