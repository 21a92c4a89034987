//! Partition reassignment and broker removal, the same call on one node and
//! in a cluster. A cluster's go through the controller (`replication`); a
//! single node holds every partition alone, so the only assignment that
//! fits it is its own id (a no-op), there is never a reassignment to list or
//! cancel, and it cannot remove itself.
//!
//! Must never: speak in Kafka error codes. Locks: none.

use super::Partitions;
use crate::replication::{ReassignError, Reassignment};

impl Partitions {
    /// Reassign a partition to `target`, or cancel its reassignment (`None`).
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
        keep_replication_factor: bool,
    ) -> Result<(), ReassignError> {
        if let Some(rm) = self.replica_manager() {
            return rm
                .reassign(topic, partition, target, keep_replication_factor)
                .await;
        }
        let exists = self
            .broker()
            .topic(topic)
            .is_some_and(|t| (0..t.partition_count()).contains(&partition));
        if !exists {
            return Err(ReassignError::UnknownTopicOrPartition);
        }
        let me = self.broker().node_id();
        match target {
            None => Err(ReassignError::NoReassignmentInProgress),
            Some(target) if target == [me] => Ok(()),
            Some(target) => Err(ReassignError::InvalidReplicaAssignment(format!(
                "a single node holds every partition alone: {target:?} must be [{me}]"
            ))),
        }
    }

    /// The ongoing reassignments (all, or of the partitions named).
    pub fn partition_reassignments(&self, only: Option<&[(String, i32)]>) -> Vec<Reassignment> {
        match self.replica_manager() {
            Some(rm) => rm.reassignments(only),
            None => Vec::new(),
        }
    }

    /// Remove broker `broker_id` from the cluster once its replicas moved.
    pub async fn remove_broker(&self, broker_id: i32) -> Result<(), ReassignError> {
        match self.replica_manager() {
            Some(rm) => rm.remove_broker(broker_id).await,
            None if broker_id == self.broker().node_id() => Err(ReassignError::InvalidRequest(
                "a single node cannot remove itself".into(),
            )),
            None => Err(ReassignError::BrokerNotRegistered(broker_id)),
        }
    }
}
