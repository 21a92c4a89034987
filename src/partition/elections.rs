//! Leader elections on request and the metadata quorum, the same calls on
//! one node and in a cluster. A cluster's go to the controller
//! (`cluster::controller::elect_leader`, `ClusterHandle::quorum`, as
//! `replication` re-exports them); a single node leads every partition it
//! holds and is its own quorum of one: every election finds the only replica leading already,
//! and the quorum is this node alone, leader of term 0 with no metadata log
//! (a single node keeps its metadata in its own database, not in a Raft log).
//!
//! Must never: speak in Kafka error codes. Locks: none.

use super::Partitions;
use crate::replication::{
    elect_leader, ElectionError, ElectionType, ProposeError, QuorumReplica, QuorumState,
};

impl Partitions {
    /// Hold an election of `kind` for `topic`/`partition`.
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<(), ElectionError> {
        if let Some(rm) = self.replica_manager() {
            return elect_leader(rm.cluster(), topic, partition, kind).await;
        }
        let exists = self
            .broker()
            .topic(topic)
            .is_some_and(|t| (0..t.partition_count()).contains(&partition));
        if !exists {
            return Err(ElectionError::UnknownTopicOrPartition);
        }
        // The only replica leads, for either kind of election.
        Err(ElectionError::NotNeeded)
    }

    /// The metadata quorum: its leader, term, committed index and members.
    pub async fn quorum(&self) -> Result<QuorumState, ProposeError> {
        if let Some(rm) = self.replica_manager() {
            return rm.cluster().quorum().await;
        }
        let me = u64::try_from(self.broker().node_id()).unwrap_or_default();
        Ok(QuorumState {
            leader_id: me,
            leader_epoch: 0,
            high_watermark: 0,
            voters: vec![QuorumReplica {
                node_id: me,
                log_end_offset: 0,
            }],
            observers: Vec::new(),
        })
    }
}
