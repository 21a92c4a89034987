//! Partition reassignment and broker removal through the controller
//! (Kafka's AlterPartitionReassignments, ListPartitionReassignments and
//! UnregisterBroker): validate, propose the change, and report the ongoing
//! reassignments as the image holds them. The replica roles follow the
//! image (`reconcile`): new replicas fetch and catch up, removed ones stop
//! and delete their local copy.
//!
//! Must never: move replicas itself (the image's completion rule does, once
//! the target is in sync). Locks: none held across an await.

use super::ReplicaManager;
use crate::cluster::image::{Command, CommandResponse, Rejection};
use crate::cluster::PROPOSE_TIMEOUT;

/// Why a reassignment or a broker removal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassignError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("no reassignment in progress")]
    NoReassignmentInProgress,
    #[error("the replication factor would change: {0}")]
    InvalidReplicationFactor(String),
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(i32),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the controller did not commit the change: {0}")]
    Unavailable(String),
}

/// One partition's reassignment, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// Every replica now: the target's, then the leaving ones.
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

impl ReplicaManager {
    /// Reassign `topic`/`partition` to `target`, or cancel its ongoing
    /// reassignment (`None`). `keep_replication_factor` refuses a target of
    /// another size (AlterPartitionReassignments v1 without
    /// `allow_replication_factor_change`).
    pub async fn reassign(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
        keep_replication_factor: bool,
    ) -> Result<(), ReassignError> {
        let original = self.cluster().read_image(|image| {
            image
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
                .map(|p| p.original_replicas())
        });
        let original = original.ok_or(ReassignError::UnknownTopicOrPartition)?;
        if let Some(target) = &target {
            if keep_replication_factor && target.len() != original.len() {
                return Err(ReassignError::InvalidReplicationFactor(format!(
                    "{} replicas now, {} asked for",
                    original.len(),
                    target.len()
                )));
            }
        }
        let command = Command::ReassignPartition {
            name: topic.into(),
            partition,
            target,
        };
        self.commit_reassignment(command).await
    }

    /// The ongoing reassignments, of every partition or of those named.
    pub fn reassignments(&self, only: Option<&[(String, i32)]>) -> Vec<Reassignment> {
        self.cluster().read_image(|image| {
            let mut out = Vec::new();
            for (name, t) in &image.topics {
                for (index, p) in t.partitions.iter().enumerate() {
                    let index = index as i32;
                    let wanted =
                        only.is_none_or(|o| o.iter().any(|(n, i)| n == name && *i == index));
                    if wanted && p.reassigning() {
                        out.push(Reassignment {
                            topic: name.clone(),
                            partition: index,
                            replicas: p.replicas.clone(),
                            adding_replicas: p.adding_replicas.clone(),
                            removing_replicas: p.removing_replicas.clone(),
                        });
                    }
                }
            }
            out
        })
    }

    /// Start removing broker `broker_id` from the cluster: the controller
    /// moves its replicas to other live brokers, then drops it from the Raft
    /// voters and the image. Refused when some partition it holds would find
    /// no other live broker to move to.
    pub async fn remove_broker(&self, broker_id: i32) -> Result<(), ReassignError> {
        let stuck = self.cluster().read_image(|image| {
            if !image.brokers.contains_key(&broker_id) {
                return Err(ReassignError::BrokerNotRegistered(broker_id));
            }
            let others: Vec<i32> = image
                .brokers
                .values()
                .filter(|b| !b.fenced && !b.decommissioning && b.broker_id != broker_id)
                .map(|b| b.broker_id)
                .collect();
            Ok(image
                .partitions_of(broker_id)
                .into_iter()
                .find(|(name, i)| {
                    image.topics[name].partitions[*i as usize]
                        .replicas
                        .iter()
                        .filter(|r| **r != broker_id)
                        .count()
                        >= others.len()
                }))
        })?;
        if let Some((name, i)) = stuck {
            return Err(ReassignError::InvalidRequest(format!(
                "{name}-{i} would have no live broker left to move the replica of broker \
                 {broker_id} to"
            )));
        }
        self.commit_reassignment(Command::DecommissionBroker { broker_id })
            .await
    }

    async fn commit_reassignment(&self, command: Command) -> Result<(), ReassignError> {
        let proposed = self
            .unless_stopping(self.cluster().propose(command, PROPOSE_TIMEOUT))
            .await
            .ok_or_else(|| ReassignError::Unavailable("this node is stopping".into()))?;
        match proposed {
            Ok(CommandResponse::Rejected(rejection)) => Err(match rejection {
                Rejection::UnknownTopicOrPartition(_) => ReassignError::UnknownTopicOrPartition,
                Rejection::NoReassignmentInProgress(_) => ReassignError::NoReassignmentInProgress,
                Rejection::UnknownBroker(id) => ReassignError::BrokerNotRegistered(id),
                Rejection::InvalidReplicaAssignment(why) => {
                    ReassignError::InvalidReplicaAssignment(why)
                }
                other => ReassignError::InvalidRequest(other.to_string()),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(ReassignError::Unavailable(e.to_string())),
        }
    }
}
