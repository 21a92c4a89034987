//! Topic changes from the Kafka admin APIs, auto-creation (`auto_create`)
//! and the group coordinator, made the same way on one node and in a
//! cluster: a single node changes its broker directly; a cluster node goes
//! through the controller (`replication::topics`) and returns once its own broker has
//! applied the change.
//!
//! Must never: know the wire format. Locks: none held across an await.

use std::collections::BTreeMap;

use super::{Partitions, Replication};
use crate::broker::TopicError;

impl Partitions {
    /// Create a topic (-1 partitions or replication factor take the defaults).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        match &self.replication {
            Replication::Local => self
                .broker
                .create_topic(
                    name,
                    partitions,
                    replication_factor,
                    overrides,
                    validate_only,
                )
                .map(|_| ()),
            Replication::Cluster(rm) => {
                rm.create_topic(
                    name,
                    partitions,
                    replication_factor,
                    overrides,
                    validate_only,
                )
                .await
            }
        }
    }

    /// Delete a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        match &self.replication {
            Replication::Local => self.broker.delete_topic(name).map(|_| ()),
            Replication::Cluster(rm) => rm.delete_topic(name).await,
        }
    }

    /// Grow a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        match &self.replication {
            Replication::Local => self.broker.create_partitions(name, count, validate_only),
            Replication::Cluster(rm) => rm.create_partitions(name, count, validate_only).await,
        }
    }

    /// Replace a topic's config overrides.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        match &self.replication {
            Replication::Local => self
                .broker
                .set_topic_configs(name, overrides, validate_only),
            Replication::Cluster(rm) => rm.set_topic_configs(name, overrides, validate_only).await,
        }
    }
}

impl Partitions {
    /// Change the credentials, ACLs or quotas: on one node directly, in a
    /// cluster through the controller. Returns the security state's new
    /// version once this node applied it.
    #[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
    pub async fn change_security(
        &self,
        change: crate::security::SecurityChange,
    ) -> Result<u64, crate::broker::SecurityError> {
        match &self.replication {
            Replication::Local => self.broker.apply_security(&change),
            Replication::Cluster(rm) => rm.change_security(change).await,
        }
    }
}
