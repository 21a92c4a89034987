//! Topic changes in a cluster: validate, propose the change to the
//! controller (Raft) from any node, and return once this node's broker has
//! applied it. (`partition::topics` chooses between this and a single
//! node's direct change.)
//!
//! Must never: change the local broker's topics itself (reconciling the
//! image does). Locks: none held across an await.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;

use super::{placement, ReplicaManager};
use crate::broker::{validate_configs, TopicError, MAX_PARTITIONS_PER_TOPIC};
use crate::cluster::image::{Command, CommandResponse, Rejection};
use crate::cluster::PROPOSE_TIMEOUT;

/// How long a change may take to show up in the local broker once committed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl ReplicaManager {
    /// Registered brokers that are not fenced, by id (new replicas are
    /// placed on these; not on a broker being removed).
    pub fn live_brokers(&self) -> Vec<i32> {
        self.cluster().read_image(|image| {
            image
                .live_brokers()
                .into_iter()
                .filter(|b| !image.brokers[b].decommissioning)
                .collect()
        })
    }

    /// Validate, place and propose a new topic; wait until it is local.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let partitions = self.broker().validate_new_topic(name, partitions)?;
        validate_configs(&overrides)?;
        let mut brokers = self.live_brokers();
        let rf = if replication_factor == -1 {
            // The default, capped at the cluster's size; while the cluster
            // starts, wait (briefly) for its brokers to register (a broker
            // that registered once and is down now is not waited for).
            let voters = self
                .cluster()
                .status()
                .voters
                .len()
                .max(self.cluster().peers().len())
                .max(1);
            let wanted = (self.settings().default_replication_factor.max(1) as usize).min(voters);
            let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
            let mut changes = self.cluster().subscribe();
            while self.cluster().read_image(|image| image.brokers.len()) < wanted
                && tokio::time::Instant::now() < deadline
            {
                let waited = self
                    .unless_stopping(tokio::time::timeout_at(deadline, changes.changed()))
                    .await;
                if waited.is_none() {
                    break;
                }
            }
            brokers = self.live_brokers();
            wanted.min(brokers.len())
        } else {
            replication_factor.max(0) as usize
        };
        if rf == 0 || rf > brokers.len() {
            return Err(TopicError::InvalidReplicationFactor(
                replication_factor,
                brokers.len(),
            ));
        }
        if self.has_topic(name) {
            return Err(TopicError::AlreadyExists(name.into()));
        }
        if validate_only {
            return Ok(());
        }
        let start = rand::thread_rng().gen_range(0..brokers.len());
        let assignments = placement::assign(&brokers, partitions as usize, rf, start);
        self.commit(
            Command::CreateTopic {
                name: name.into(),
                topic_id: uuid::Uuid::new_v4(),
                configs: overrides,
                assignments,
            },
            name,
        )
        .await?;
        self.wait_reconciled(|b| b.topic(name).is_some(), APPLY_TIMEOUT)
            .await;
        Ok(())
    }

    /// Delete a topic through the controller.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.commit(Command::DeleteTopic { name: name.into() }, name)
            .await?;
        self.wait_reconciled(|b| b.topic(name).is_none(), APPLY_TIMEOUT)
            .await;
        Ok(())
    }

    /// Grow a topic to `count` partitions through the controller.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let image = self.image();
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?;
        let current = topic.partitions.len() as i32;
        if count <= current || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger, \
                 and at most {MAX_PARTITIONS_PER_TOPIC}"
            )));
        }
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let brokers = self.live_brokers();
        if rf > brokers.len() {
            return Err(TopicError::InvalidReplicationFactor(
                rf as i16,
                brokers.len(),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let start = rand::thread_rng().gen_range(0..brokers.len());
        let assignments = placement::assign(&brokers, (count - current) as usize, rf, start);
        self.commit(
            Command::CreatePartitions {
                name: name.into(),
                assignments,
            },
            name,
        )
        .await?;
        self.wait_reconciled(
            |b| b.topic(name).is_some_and(|t| t.partition_count() >= count),
            APPLY_TIMEOUT,
        )
        .await;
        Ok(())
    }

    /// Replace a topic's config overrides through the controller.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        validate_configs(&overrides)?;
        let image = self.image();
        let current = &image
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.into()))?
            .configs;
        if validate_only {
            return Ok(());
        }
        let delete = current
            .keys()
            .filter(|k| !overrides.contains_key(*k))
            .cloned()
            .collect();
        self.commit(
            Command::AlterConfigs {
                name: name.into(),
                set: overrides.clone(),
                delete,
            },
            name,
        )
        .await?;
        self.wait_reconciled(
            |b| {
                b.topic(name)
                    .is_some_and(|t| t.configs().overrides == overrides)
            },
            APPLY_TIMEOUT,
        )
        .await;
        Ok(())
    }

    /// Commit a topic command through the controller.
    async fn commit(&self, command: Command, name: &str) -> Result<(), TopicError> {
        let proposed = self
            .unless_stopping(self.cluster().propose(command, PROPOSE_TIMEOUT))
            .await
            .ok_or_else(|| TopicError::Unavailable("this node is stopping".into()))?;
        match proposed {
            Ok(CommandResponse::Rejected(Rejection::TopicAlreadyExists(_))) => {
                Err(TopicError::AlreadyExists(name.into()))
            }
            Ok(CommandResponse::Rejected(Rejection::UnknownTopicOrPartition(_))) => {
                Err(TopicError::Unknown(name.into()))
            }
            Ok(CommandResponse::Rejected(other)) => {
                Err(TopicError::InvalidConfig(other.to_string()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(TopicError::Unavailable(e.to_string())),
        }
    }
}
