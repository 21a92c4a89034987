//! What the cluster holds, the same call on one node and in a cluster: its
//! topics' partitions and its brokers (from the applied image in a cluster,
//! from this node alone otherwise), for the admin APIs that act on "every
//! partition" (ElectLeaders) or list resources (ListConfigResources).
//!
//! Must never: speak in Kafka error codes. Locks: none.

use super::Partitions;

impl Partitions {
    /// Every partition of every topic, by topic name and index.
    pub fn all_partitions(&self) -> Vec<(String, i32)> {
        match self.replica_manager() {
            Some(rm) => rm.cluster().read_image(|image| {
                image
                    .topics
                    .iter()
                    .flat_map(|(name, t)| (0..t.partitions.len() as i32).map(|i| (name.clone(), i)))
                    .collect()
            }),
            None => self
                .broker()
                .topics()
                .iter()
                .flat_map(|t| (0..t.partition_count()).map(|i| (t.name.clone(), i)))
                .collect(),
        }
    }

    /// Every topic's name, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self.replica_manager() {
            Some(rm) => rm
                .cluster()
                .read_image(|image| image.topics.keys().cloned().collect()),
            None => self
                .broker()
                .topics()
                .iter()
                .map(|t| t.name.clone())
                .collect(),
        };
        names.sort();
        names
    }

    /// The ids of the registered brokers (this node alone on a single node).
    pub fn broker_ids(&self) -> Vec<i32> {
        match self.replica_manager() {
            Some(rm) => rm
                .cluster()
                .read_image(|image| image.brokers.keys().copied().collect()),
            None => vec![self.broker().node_id()],
        }
    }
}
