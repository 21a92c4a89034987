//! The client's view of the cluster: brokers, topics, and for every partition
//! its leader. Filled from Metadata responses and refreshed when a broker says
//! our view is stale (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! LEADER_NOT_AVAILABLE, ...).
//!
//! The cache never guesses: a partition without a known leader has
//! `leader_id == -1`, and callers refresh and retry.
//!
//! Owns the cache and the shapes it hands out; the requests that fill it
//! (Metadata, CreateTopics) are `Client` methods in `cluster`. Must never:
//! open connections or import anything of the client above `error`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, RwLock};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::MetadataResponse;
use uuid::Uuid;

use super::error::is_stale_metadata_error;

/// One broker as advertised in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub node_id: i32,
    /// Advertised host name.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`, ready for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id, or -1 while there is none.
    pub leader_id: i32,
    /// The leader epoch, or -1 if the broker does not say.
    pub leader_epoch: i32,
    /// The partition-level error code of the Metadata response (0 if none).
    pub error_code: i16,
}

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id (nil when the broker does not send ids).
    pub topic_id: Uuid,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// How many partitions the topic has.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// The leader of `partition`, if one is known.
    pub fn leader(&self, partition: i32) -> Option<i32> {
        self.partition(partition)
            .map(|p| p.leader_id)
            .filter(|&id| id >= 0)
    }

    /// The metadata of `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .filter(|p| p.partition == partition)
            .or_else(|| self.partitions.iter().find(|p| p.partition == partition))
    }

    /// True when every partition has a leader.
    pub fn all_leaders_known(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(|p| p.leader_id >= 0)
    }
}

/// Last known cluster metadata. Reads are lock-cheap (`RwLock` + `Arc`).
#[derive(Debug)]
pub(crate) struct MetadataCache {
    /// Brokers by id.
    brokers: RwLock<HashMap<i32, BrokerInfo>>,
    /// Topics by name; absent means "not known to exist".
    topics: RwLock<HashMap<String, Arc<TopicInfo>>>,
    /// The controller's broker id, or -1 if unknown.
    pub(crate) controller_id: AtomicI32,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self {
            brokers: RwLock::default(),
            topics: RwLock::default(),
            controller_id: AtomicI32::new(-1),
        }
    }
}

impl MetadataCache {
    pub(crate) fn broker(&self, id: i32) -> Option<BrokerInfo> {
        read(&self.brokers).get(&id).cloned()
    }

    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = read(&self.brokers).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        read(&self.topics).get(name).cloned()
    }

    /// Merge a Metadata response: brokers are replaced, topics updated or removed.
    pub(crate) fn apply(&self, response: &MetadataResponse) {
        let brokers: HashMap<i32, BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        if !brokers.is_empty() {
            *self.brokers.write().unwrap_or_else(|p| p.into_inner()) = brokers;
        }
        self.controller_id
            .store(response.controller_id.0, Ordering::Relaxed);
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            match ResponseError::try_from_code(topic.error_code) {
                None | Some(ResponseError::LeaderNotAvailable) if !topic.partitions.is_empty() => {
                    let mut partitions: Vec<PartitionInfo> = topic
                        .partitions
                        .iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            leader_id: if is_stale_metadata_error_code(p.error_code)
                                && p.error_code != ResponseError::ReplicaNotAvailable.code()
                            {
                                -1
                            } else {
                                p.leader_id.0
                            },
                            leader_epoch: p.leader_epoch,
                            error_code: p.error_code,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    topics.insert(
                        name.clone(),
                        Arc::new(TopicInfo {
                            name,
                            topic_id: topic.topic_id,
                            partitions,
                        }),
                    );
                }
                _ => {
                    topics.remove(&name);
                }
            }
        }
    }
}

fn is_stale_metadata_error_code(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(is_stale_metadata_error)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn partition(index: i32, leader: i32, error: i16) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(leader.into())
            .with_error_code(error)
    }

    #[test]
    fn apply_maps_leaders_and_drops_unknown_topics() {
        let cache = MetadataCache::default();
        let response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092)])
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                    .with_partitions(vec![
                        partition(1, 1, 0),
                        partition(0, 1, 0),
                        partition(2, 1, ResponseError::LeaderNotAvailable.code()),
                    ]),
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("ghost"))))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            ]);
        cache.apply(&response);
        assert_eq!(
            cache.broker(1).map(|b| b.addr()),
            Some("localhost:9092".to_owned())
        );
        let orders = cache.topic("orders").unwrap();
        assert_eq!(orders.partition_count(), 3);
        assert_eq!(orders.leader(0), Some(1));
        assert_eq!(orders.leader(1), Some(1));
        assert_eq!(orders.leader(2), None);
        assert!(!orders.all_leaders_known());
        assert!(cache.topic("ghost").is_none());
    }
}
